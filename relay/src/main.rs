fn main() -> std::process::ExitCode {
    gaesup_relay::main()
}
