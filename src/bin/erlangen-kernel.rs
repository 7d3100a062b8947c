//! `erlangen-kernel`: the REPL program. See `erlangen-kernel -h`.

fn main() -> std::process::ExitCode {
    erlangen::kernel::main()
}
