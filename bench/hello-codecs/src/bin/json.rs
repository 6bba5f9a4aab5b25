fn main() {
    bench_hello_codecs::mount(bench_hello_codecs::json);
}
