// Command franz-client is the franz-go client of the Kafka e2e tests: it produces or
// consumes (optionally in a consumer group) as its flags say, and prints one JSON object
// with what it did, in the same shape as the Python clients in ../kafka/, so the tests
// compare clients record by record.
//
// Payloads follow the suite's rule: value i is "<prefix>-<i>", padded with 'x' to
// -value-size bytes, and key i is -key when given, else "k-<i>".
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

type record struct {
	Topic     string      `json:"topic"`
	Partition int32       `json:"partition"`
	Offset    int64       `json:"offset"`
	Key       *string     `json:"key"`
	Value     string      `json:"value"`
	Headers   [][2]string `json:"headers"`
	Timestamp int64       `json:"timestamp"`
}

type result struct {
	Client  string     `json:"client"`
	Op      string     `json:"op"`
	Acked   int        `json:"acked"`
	Offsets [][2]int64 `json:"offsets"`
	Records []record   `json:"records"`
	Assigns [][]int32  `json:"assignments"`
	Errors  []string   `json:"errors"`
	Elapsed float64    `json:"elapsed_s"`
}

func payload(prefix string, i, size int) string {
	s := fmt.Sprintf("%s-%d", prefix, i)
	if len(s) < size {
		s += strings.Repeat("x", size-len(s))
	}
	return s
}

func franzVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == "github.com/twmb/franz-go" {
				return d.Version
			}
		}
	}
	return "unknown"
}

func main() {
	var (
		brokers     = flag.String("brokers", "127.0.0.1:9092", "comma-separated bootstrap brokers")
		mode        = flag.String("mode", "", "produce or consume")
		topic       = flag.String("topic", "", "topic")
		count       = flag.Int("count", 10, "records to produce, or to consume before stopping")
		prefix      = flag.String("prefix", "franz", "payload prefix")
		valueSize   = flag.Int("value-size", 0, "pad each value with 'x' to this many bytes")
		key         = flag.String("key", "", "key of every record (default k-<i>)")
		headers     = flag.String("headers", "", "headers of every record: k=v,k2=v2")
		compression = flag.String("compression", "none", "none, gzip, snappy, lz4 or zstd")
		acks        = flag.String("acks", "all", "all, leader or none")
		idempotent  = flag.Bool("idempotent", true, "idempotent producer (needs -acks all)")
		partition   = flag.Int("partition", -1, "produce to this partition (default: by key)")
		group       = flag.String("group", "", "consume as a member of this group")
		fromEnd     = flag.Bool("from-end", false, "without committed offsets, start at the end")
		commit      = flag.Bool("commit", true, "commit consumed offsets (groups only)")
		timeout     = flag.Duration("timeout", 30*time.Second, "give up after this long")
		mechanism   = flag.String("sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
		user        = flag.String("user", "", "SASL user")
		password    = flag.String("password", "", "SASL password")
		version     = flag.Bool("version", false, "print the franz-go version and exit")
	)
	flag.Parse()
	if *version {
		fmt.Printf("franz-go %s\n", franzVersion())
		return
	}
	res := result{Client: "franz-go", Op: *mode, Offsets: [][2]int64{}, Records: []record{}, Assigns: [][]int32{}, Errors: []string{}}
	start := time.Now()
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(*brokers, ",")...),
		kgo.AllowAutoTopicCreation(),
		kgo.DialTimeout(5 * time.Second),
		kgo.RetryTimeout(*timeout),
		// Failed logins and broker errors are only visible in the client's log.
		kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelWarn, nil)),
	}
	switch *mechanism {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: *user, Pass: *password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: *user, Pass: *password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: *user, Pass: *password}.AsSha512Mechanism()))
	default:
		fail(&res, fmt.Errorf("unknown -sasl-mechanism %q", *mechanism))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var err error
	switch *mode {
	case "produce":
		err = produce(ctx, &res, opts, *topic, *count, *prefix, *valueSize, *key, *headers, *compression, *acks, *idempotent, *partition)
	case "consume":
		err = consume(ctx, &res, opts, *topic, *count, *group, *fromEnd, *commit)
	default:
		err = fmt.Errorf("-mode must be produce or consume, not %q", *mode)
	}
	res.Elapsed = time.Since(start).Seconds()
	if err != nil {
		fail(&res, err)
	}
	emit(&res)
}

func fail(res *result, err error) {
	res.Errors = append(res.Errors, err.Error())
	emit(res)
	os.Exit(1)
}

func emit(res *result) {
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func produce(ctx context.Context, res *result, opts []kgo.Opt, topic string, count int, prefix string, valueSize int, key, headers, compression, acks string, idempotent bool, partition int) error {
	codec := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	c, ok := codec[compression]
	if !ok {
		return fmt.Errorf("unknown -compression %q", compression)
	}
	opts = append(opts, kgo.ProducerBatchCompression(c), kgo.DefaultProduceTopic(topic))
	switch acks {
	case "all":
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "leader":
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
	case "none":
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()))
	default:
		return fmt.Errorf("unknown -acks %q", acks)
	}
	if !idempotent || acks != "all" {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	if partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	var hdrs []kgo.RecordHeader
	if headers != "" {
		for _, kv := range strings.Split(headers, ",") {
			k, v, _ := strings.Cut(kv, "=")
			hdrs = append(hdrs, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, 0, count)
	for i := 0; i < count; i++ {
		k := key
		if k == "" {
			k = fmt.Sprintf("k-%d", i)
		}
		r := &kgo.Record{Key: []byte(k), Value: []byte(payload(prefix, i, valueSize)), Headers: hdrs}
		if partition >= 0 {
			r.Partition = int32(partition)
		}
		recs = append(recs, r)
	}
	for _, pr := range cl.ProduceSync(ctx, recs...) {
		if pr.Err != nil {
			res.Errors = append(res.Errors, pr.Err.Error())
			continue
		}
		res.Acked++
		res.Offsets = append(res.Offsets, [2]int64{int64(pr.Record.Partition), pr.Record.Offset})
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("%d of %d records failed", len(res.Errors), count)
	}
	return nil
}

func consume(ctx context.Context, res *result, opts []kgo.Opt, topic string, count int, group string, fromEnd, commit bool) error {
	reset := kgo.NewOffset().AtStart()
	if fromEnd {
		reset = kgo.NewOffset().AtEnd()
	}
	opts = append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(reset), kgo.FetchMaxWait(500*time.Millisecond))
	var mu sync.Mutex
	if group != "" {
		opts = append(opts, kgo.ConsumerGroup(group), kgo.DisableAutoCommit(),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				mu.Lock()
				defer mu.Unlock()
				ps := append([]int32(nil), m[topic]...)
				sort.Slice(ps, func(a, b int) bool { return ps[a] < ps[b] })
				res.Assigns = append(res.Assigns, ps)
			}))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(res.Records) < count {
		// Never take more than asked, so a commit covers exactly what was consumed.
		fetches := cl.PollRecords(ctx, count-len(res.Records))
		if ctx.Err() != nil {
			return fmt.Errorf("consumed %d of %d records before the timeout", len(res.Records), count)
		}
		for _, fe := range fetches.Errors() {
			res.Errors = append(res.Errors, fmt.Sprintf("%s[%d]: %v", fe.Topic, fe.Partition, fe.Err))
		}
		fetches.EachRecord(func(r *kgo.Record) {
			rec := record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Value: string(r.Value), Headers: [][2]string{}, Timestamp: r.Timestamp.UnixMilli()}
			if r.Key != nil {
				k := string(r.Key)
				rec.Key = &k
			}
			for _, h := range r.Headers {
				rec.Headers = append(rec.Headers, [2]string{h.Key, string(h.Value)})
			}
			res.Records = append(res.Records, rec)
		})
	}
	if group != "" && commit {
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
	}
	return nil
}
