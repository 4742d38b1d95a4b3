//! The `nodewright` binary: a thin shell around [`nodewright::cli`].

fn main() -> std::process::ExitCode {
    nodewright::cli::main()
}
