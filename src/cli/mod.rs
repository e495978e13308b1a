//! The command line: argument parsing and the glue between pipeline stages.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::core::diag::Diagnostic;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: invalid input or a failed check.
pub const EXIT_INVALID: u8 = 1;
/// Exit code: nftpol itself failed (IO, nft missing, ...).
pub const EXIT_FAILURE: u8 = 2;

/// nftpol: Kubernetes NetworkPolicy enforcement with one nftables table.
#[derive(Debug, Parser)]
#[command(name = "nftpol", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile manifests into the nftables ruleset and print it.
    Compile(CompileArgs),
    /// Compile manifests and load the ruleset into the current network namespace.
    Apply(ApplyArgs),
    /// Remove table inet nftpol from the current network namespace (stops enforcement).
    Uninstall(UninstallArgs),
    /// Run the node agent: watch the API server and keep the table in sync.
    Run(RunArgs),
    /// Explain, offline, why a flow is allowed or denied (naming policies, rules, peers, ports).
    Explain(ExplainArgs),
    /// Print the selector graph (policies, selectors, namespaces, pods) as Graphviz DOT or JSON.
    Graph(GraphArgs),
}

/// `nftpol run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// This node's name; pods with this spec.nodeName are enforced.
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// Kubeconfig file (default: in-cluster config, then $KUBECONFIG / ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The nft binary to run.
    #[arg(long, default_value = "nft")]
    pub nft: String,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:9750")]
    pub listen: std::net::SocketAddr,
    /// Quiet time that ends a burst of events; also the minimum time between applies.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub min_interval: std::time::Duration,
    /// Longest any event waits for its apply.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub max_delay: std::time::Duration,
    /// How often to verify the kernel table and repair drift (0s = never).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub resync: std::time::Duration,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// Drop logging.
    #[command(flatten)]
    pub drop_log: DropLogArgs,
}

/// Drop logging flags (docs/drop-logging.md), shared by `compile`, `apply` and `run`.
#[derive(Debug, Args)]
pub struct DropLogArgs {
    /// Log dropped packets in every namespace (except those annotated
    /// `nftpol.io/log-drops: "false"`); without it only namespaces annotated
    /// `nftpol.io/log-drops: "true"` log.
    #[arg(long)]
    pub log_drops: bool,
    /// NFLOG group the log rules send packets to (and the agent reads).
    #[arg(long, default_value_t = crate::core::compile::DropLog::DEFAULT_GROUP)]
    pub log_group: u16,
    /// Logged packets per second, per group chain, once the burst is used up.
    #[arg(long, default_value_t = crate::core::compile::DropLog::DEFAULT_RATE,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub log_rate: u32,
    /// Packets logged back to back, per group chain, before the rate applies.
    #[arg(long, default_value_t = crate::core::compile::DropLog::DEFAULT_BURST,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub log_burst: u32,
}

impl DropLogArgs {
    /// The compiler's setting.
    pub fn options(&self) -> crate::core::compile::DropLog {
        crate::core::compile::DropLog {
            all_namespaces: self.log_drops,
            group: self.log_group,
            rate: self.log_rate,
            burst: self.log_burst,
        }
    }
}

/// `nftpol uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// The nft binary to run.
    #[arg(long, default_value = "nft")]
    pub nft: String,
}

/// Inputs shared by every command that reads manifests.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// YAML or JSON files or directories holding Namespaces, Pods and
    /// NetworkPolicies (multi-document, `kind: List`); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Enforce only pods with this spec.nodeName (the DaemonSet's view);
    /// without it every pod is enforced.
    #[arg(long)]
    pub node: Option<String>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `nft -f` script.
    Nft,
    /// libnftables JSON (`nft -j -f`).
    Json,
}

/// `nftpol compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Inputs.
    #[command(flatten)]
    pub input: InputArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "nft")]
    pub format: Format,
    /// Write the ruleset here instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Drop logging.
    #[command(flatten)]
    pub drop_log: DropLogArgs,
}

/// `nftpol apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Inputs.
    #[command(flatten)]
    pub input: InputArgs,
    /// Only check that the kernel would accept the ruleset (`nft -c`); change nothing.
    #[arg(long)]
    pub check: bool,
    /// The nft binary to run.
    #[arg(long, default_value = "nft")]
    pub nft: String,
    /// Drop logging.
    #[command(flatten)]
    pub drop_log: DropLogArgs,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Compile(a) => compile_cmd(&a),
        Command::Apply(a) => apply_cmd(&a),
        Command::Uninstall(a) => uninstall_cmd(&a),
        Command::Run(a) => run_cmd(a),
        Command::Explain(a) => explain_cmd(&a),
        Command::Graph(a) => graph_cmd(&a),
    };
    ExitCode::from(code)
}

/// The result of reading and compiling inputs.
struct Compiled {
    script: Option<crate::core::compile::Compiled>,
    has_errors: bool,
}

fn report(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
}

fn load_and_compile(input: &InputArgs, drop_log: crate::core::compile::DropLog) -> Compiled {
    let (objs, load_diags) = crate::core::k8s::load_paths(&input.files);
    report(&load_diags);
    if load_diags.iter().any(Diagnostic::is_error) {
        // Something could not be read: compiling the rest could silently drop
        // a policy and widen access, so nothing is produced.
        let _ = writeln!(
            std::io::stderr(),
            "nftpol: input has errors; no ruleset produced"
        );
        return Compiled {
            script: None,
            has_errors: true,
        };
    }
    let out = crate::core::compile::compile_objects(
        &objs,
        &crate::core::compile::Options {
            node: input.node.clone(),
            drop_log,
        },
    );
    report(&out.diagnostics);
    let has_errors = out.diagnostics.iter().any(Diagnostic::is_error);
    Compiled {
        script: Some(out),
        has_errors,
    }
}

fn compile_cmd(a: &CompileArgs) -> u8 {
    let c = load_and_compile(&a.input, a.drop_log.options());
    let Some(out) = c.script else {
        return EXIT_INVALID;
    };
    let text = match a.format {
        Format::Nft => crate::core::nft::render::script(&out.ruleset),
        Format::Json => crate::core::nft::json::script(&out.ruleset),
    };
    let written = match &a.output {
        Some(path) => std::fs::write(path, text.as_bytes()).map_err(|e| {
            let _ = writeln!(
                std::io::stderr(),
                "nftpol: cannot write {}: {e}",
                path.display()
            );
            EXIT_FAILURE
        }),
        None => print_stdout(&text),
    };
    if let Err(code) = written {
        return code;
    }
    if c.has_errors {
        let _ = writeln!(
            std::io::stderr(),
            "nftpol: input has errors (see above): invalid policies fail closed, invalid objects are left out"
        );
        EXIT_INVALID
    } else {
        EXIT_OK
    }
}

fn apply_cmd(a: &ApplyArgs) -> u8 {
    let c = load_and_compile(&a.input, a.drop_log.options());
    let Some(out) = c.script else {
        return EXIT_INVALID;
    };
    if c.has_errors {
        let _ = writeln!(
            std::io::stderr(),
            "nftpol: not applied: fix the errors above (the kernel ruleset is unchanged)"
        );
        return EXIT_INVALID;
    }
    if let Err(e) = nft_versions_ok(&a.nft) {
        let _ = writeln!(std::io::stderr(), "nftpol: {e}");
        return EXIT_FAILURE;
    }
    let text = crate::core::nft::render::script(&out.ruleset);
    match crate::kernel::apply::run_nft(&a.nft, &text, a.check, false) {
        Ok(()) => {
            let s = out.ruleset.stats();
            let _ = writeln!(
                std::io::stderr(),
                "nftpol: {} table inet nftpol: {} chains, {} rules, {} sets, {} maps, {} elements",
                if a.check { "checked" } else { "loaded" },
                s.chains,
                s.rules,
                s.sets,
                s.maps,
                s.elements
            );
            EXIT_OK
        }
        Err(e @ crate::kernel::apply::ApplyError::Rejected { .. }) => {
            let _ = writeln!(std::io::stderr(), "nftpol: {e}");
            if a.check { EXIT_INVALID } else { EXIT_FAILURE }
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "nftpol: {e}");
            EXIT_FAILURE
        }
    }
}

/// Checks `nft` and the kernel against the minimum versions; unreadable
/// versions are reported as warnings and do not stop the command.
fn nft_versions_ok(nft: &str) -> Result<(), crate::kernel::version::VersionError> {
    let found = crate::kernel::version::check(nft)?;
    for w in &found.warnings {
        let _ = writeln!(std::io::stderr(), "warning: {w}");
    }
    Ok(())
}

fn uninstall_cmd(a: &UninstallArgs) -> u8 {
    match crate::kernel::enforcer::Enforcer::new(a.nft.clone()).remove_table() {
        Ok(()) => {
            let _ = writeln!(std::io::stderr(), "nftpol: table inet nftpol removed");
            EXIT_OK
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "nftpol: {e}");
            EXIT_FAILURE
        }
    }
}

fn run_cmd(a: RunArgs) -> u8 {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if a.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    // Fail fast, before the API server is contacted: an agent that can never
    // load its ruleset must not look alive.
    match crate::kernel::version::check(&a.nft) {
        Ok(found) => {
            for w in &found.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!(
                nft = %found.nft.map_or("unknown".into(), |v| v.to_string()),
                kernel = %found.kernel.map_or("unknown".into(), |v| v.to_string()),
                "nft and kernel versions"
            );
        }
        Err(e) => {
            tracing::error!("{e}");
            return EXIT_FAILURE;
        }
    }
    let cfg = crate::agent::Config {
        node: a.node,
        kubeconfig: a.kubeconfig,
        nft: a.nft,
        listen: a.listen,
        min_interval: a.min_interval,
        max_delay: a.max_delay,
        resync: a.resync,
        drop_log: a.drop_log.options(),
    };
    match crate::agent::run_blocking(cfg) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            tracing::error!(error = %e, "nftpol run failed");
            EXIT_FAILURE
        }
    }
}

/// Manifests read by `explain` and `graph` (no `--node`: they answer the
/// cluster-wide question, each node enforcing its own pods).
#[derive(Debug, Args)]
pub struct ClusterInputArgs {
    /// YAML or JSON files or directories holding Namespaces, Pods and
    /// NetworkPolicies (multi-document, `kind: List`); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
}

/// `nftpol explain` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainOutput {
    /// A readable report.
    Text,
    /// JSON (schema in docs/explain.md).
    Json,
}

/// A verdict `--expect` can assert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExpectVerdict {
    /// The flow must be allowed.
    Allowed,
    /// The flow must be denied.
    Denied,
}

/// Address families for `--family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FamilyArg {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// `nftpol explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Inputs.
    #[command(flatten)]
    pub input: ClusterInputArgs,
    // Endpoints and the port are parsed by the command, not by clap, so a
    // bad value exits 1 (invalid input) like every other input error.
    /// Source: NAMESPACE/POD, or an IP address (a pod's IP means that pod).
    #[arg(long)]
    pub from: String,
    /// Destination: NAMESPACE/POD, or an IP address (a pod's IP means that pod).
    #[arg(long)]
    pub to: String,
    /// Destination port: NUMBER[/PROTO] (TCP by default) or a container port
    /// NAME[/PROTO] of the destination pod.
    #[arg(long)]
    pub port: String,
    /// Address family when both ends are pods (default: IPv4 if both have one).
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: ExplainOutput,
    /// Exit 1 unless the verdict is this one (for CI checks).
    #[arg(long, value_enum)]
    pub expect: Option<ExpectVerdict>,
}

/// `nftpol graph` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT (render with `dot -Tpng`).
    Dot,
    /// JSON with nodes and edges (schema in docs/explain.md).
    Json,
}

/// `nftpol graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Inputs.
    #[command(flatten)]
    pub input: ClusterInputArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
}

/// Loads and converts inputs for `explain`/`graph`. `None` when the input
/// could not be read (then nothing is answered, as `compile` produces nothing);
/// otherwise the cluster and whether conversion found errors (invalid
/// policies fail closed, and the answer says so).
fn load_cluster(files: &[PathBuf]) -> Option<(crate::core::model::Cluster, bool)> {
    let (objs, load_diags) = crate::core::k8s::load_paths(files);
    report(&load_diags);
    if load_diags.iter().any(Diagnostic::is_error) {
        let _ = writeln!(
            std::io::stderr(),
            "nftpol: input has errors; nothing can be answered (an unread policy could change the answer)"
        );
        return None;
    }
    let (cluster, diags) = crate::core::k8s::to_cluster(&objs);
    report(&diags);
    Some((cluster, diags.iter().any(Diagnostic::is_error)))
}

/// Writes to stdout; a closed pipe (`| head`) is the reader's choice, not a
/// failure.
fn print_stdout(text: &str) -> Result<(), u8> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "nftpol: cannot write stdout: {e}");
            Err(EXIT_FAILURE)
        }
    }
}

fn explain_cmd(a: &ExplainArgs) -> u8 {
    let parsed = (|| -> Result<_, String> {
        let from = a.from.parse().map_err(|e| format!("--from: {e}"))?;
        let to = a.to.parse().map_err(|e| format!("--to: {e}"))?;
        let port = a.port.parse().map_err(|e| format!("--port: {e}"))?;
        Ok((from, to, port))
    })();
    let (from, to, port) = match parsed {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "nftpol: explain: {e}");
            return EXIT_INVALID;
        }
    };
    let Some((cluster, has_errors)) = load_cluster(&a.input.files) else {
        return EXIT_INVALID;
    };
    let graph = crate::core::graph::SelectorGraph::build(&cluster);
    let query = crate::core::explain::Query {
        from,
        to,
        port,
        family: a.family.map(|f| match f {
            FamilyArg::Ipv4 => crate::core::model::Family::V4,
            FamilyArg::Ipv6 => crate::core::model::Family::V6,
        }),
    };
    let ex = match crate::core::explain::explain(&cluster, &graph, &query) {
        Ok(ex) => ex,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "nftpol: explain: {e}");
            return EXIT_INVALID;
        }
    };
    let text = match a.output {
        ExplainOutput::Text => ex.to_text(),
        ExplainOutput::Json => {
            let mut s = serde_json::to_string_pretty(&ex).expect("plain data serialises");
            s.push('\n');
            s
        }
    };
    if let Err(code) = print_stdout(&text) {
        return code;
    }
    if has_errors {
        let _ = writeln!(
            std::io::stderr(),
            "nftpol: input has errors (see above): invalid policies fail closed, and the answer above includes that"
        );
        return EXIT_INVALID;
    }
    let want = a.expect.map(|e| match e {
        ExpectVerdict::Allowed => crate::core::explain::Verdict::Allowed,
        ExpectVerdict::Denied => crate::core::explain::Verdict::Denied,
    });
    match want {
        Some(w) if w != ex.verdict => {
            let _ = writeln!(
                std::io::stderr(),
                "nftpol: expected {w}, but the flow is {}",
                ex.verdict
            );
            EXIT_INVALID
        }
        _ => EXIT_OK,
    }
}

fn graph_cmd(a: &GraphArgs) -> u8 {
    let Some((cluster, has_errors)) = load_cluster(&a.input.files) else {
        return EXIT_INVALID;
    };
    let graph = crate::core::graph::SelectorGraph::build(&cluster);
    let export = crate::core::graph::export::export(&cluster, &graph);
    let text = match a.format {
        GraphFormat::Dot => crate::core::graph::export::dot(&export),
        GraphFormat::Json => crate::core::graph::export::json(&export),
    };
    if let Err(code) = print_stdout(&text) {
        return code;
    }
    if has_errors { EXIT_INVALID } else { EXIT_OK }
}
