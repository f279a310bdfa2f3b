fn main() {
    print!("{}", operator::crd::all_yaml().unwrap());
}
