{{- define "robustmq.fullname" -}}
{{- if contains "robustmq" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-robustmq" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "robustmq.operatorName" -}}
{{- printf "%s-operator" (include "robustmq.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "robustmq.serviceAccountName" -}}
{{- default (include "robustmq.operatorName" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "robustmq.selectorLabels" -}}
app.kubernetes.io/name: robustmq-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "robustmq.labels" -}}
{{ include "robustmq.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}
