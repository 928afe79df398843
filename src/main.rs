fn main() {
    std::process::exit(ade2eah::cli::main());
}
