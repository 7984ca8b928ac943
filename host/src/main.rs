//! The `colloquy` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

use colloquy::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

// Conversations evicted from the caches free many small objects at once (events, parse data,
// states); glibc's malloc then spends most of its time in `_int_malloc` sorting its bins (a
// turn on a new conversation slowed from 0.1 ms to 200 ms at p99 in the P2 benchmark).
// mimalloc's per-page free lists do not degrade that way, and it is faster on small objects.
// Transparent huge pages are off for it (`no_thp`): with them an idle host held 16 MB instead
// of 9 (P6). `sdk::allocator` enters it through its plain `malloc` where it can. Plugins
// keep their own allocator: everything crossing the ABI is an abi_stable type that frees
// through the side that allocated it.
#[global_allocator]
static ALLOCATOR: colloquy_plugin_api::sdk::allocator::MiMalloc =
    colloquy_plugin_api::sdk::allocator::MiMalloc;

fn init_logging(verbose: bool, log_file: Option<&std::path::Path>) -> Result<(), String> {
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Run(args) => {
            if let Err(e) = init_logging(args.verbose, args.log_file.as_deref()) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            match runtime.block_on(colloquy::server::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Plugins(dirs) => {
            let _ = init_logging(false, None);
            print!("{}", colloquy::server::list_plugins(&dirs.plugin_dirs));
            ExitCode::SUCCESS
        }
        Command::PluginTest(args) => {
            let _ = init_logging(false, None);
            match runtime.block_on(colloquy::server::plugin_test(args)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Shell(args) => {
            let _ = init_logging(false, None);
            match runtime.block_on(colloquy::shell::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Test(colloquy::cli::TestCommand::Nlu(args)) => {
            let _ = init_logging(false, None);
            match colloquy::training::evaluate_nlu(&args.nlu, args.folds, args.seed) {
                Ok(report) => {
                    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                    if let Some(dir) = args.out.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    if let Err(e) = std::fs::write(&args.out, &text) {
                        eprintln!("error: cannot write {}: {e}", args.out.display());
                        return ExitCode::FAILURE;
                    }
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Train(args) => {
            let _ = init_logging(false, None);
            let opts = colloquy::training::TrainOptions {
                domain: args.domain,
                data: args.data,
                config: args.config,
                out: args.out,
                fixed_model_name: args.fixed_model_name,
                force: args.force,
            };
            let started = std::time::Instant::now();
            match colloquy::training::train(&opts, &mut |step| println!("{step}")) {
                Ok(outcome) => {
                    for w in &outcome.warnings {
                        eprintln!("warning: {w}");
                    }
                    if outcome.skipped {
                        println!(
                            "Nothing changed since {}: training skipped (use --force to retrain).",
                            outcome.path.display()
                        );
                    } else {
                        println!("Training took {:.2} s.", started.elapsed().as_secs_f64());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::NewPlugin(args) => match colloquy::scaffold::new_plugin(&args) {
            Ok(made) => {
                print!("{}", made.next_steps());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}
