//! The command line's shape: clap structs only, no behaviour (the command
//! bodies are in the sibling modules). `tests/deploy.rs` parses the
//! DaemonSet's command with [`Cli`], so this is the agent's real parser.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Compare two manifest trees (a pull request's base and head): the flows that
    /// become allowed or denied, and each node's ruleset changes.
    Diff(DiffArgs),
    /// Show on how many nodes each policy's current version is programmed,
    /// and which nodes lag or fail (exit 1 if any lags beyond --max-lag).
    Status(StatusArgs),
    /// Print nftpol's version, commit, build date and toolchain, and the nft
    /// and kernel it finds here.
    Version(VersionArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(CompletionArgs),
    /// Print the man page (nftpol(1)), or write one page per command to a directory.
    Man(ManArgs),
    /// Print a CustomResourceDefinition nftpol's types generate:
    /// clusternetworkpolicies (deploy/crd-clusternetworkpolicies.yaml) or
    /// nodeprogramstatuses (deploy/manifests/04-crd-nodeprogramstatuses.yaml).
    #[command(hide = true)]
    Crd(CrdArgs),
}

/// `nftpol crd`.
#[derive(Debug, Args)]
pub struct CrdArgs {
    /// Which CRD.
    #[arg(value_enum, default_value = "clusternetworkpolicies")]
    pub which: CrdName,
}

/// `nftpol run --element-updates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ElementUpdates {
    /// One nftables netlink batch per change (no process).
    Netlink,
    /// `nft -f` per change.
    Nft,
}

/// The CRDs nftpol generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CrdName {
    /// policy.networking.k8s.io ClusterNetworkPolicy.
    Clusternetworkpolicies,
    /// nftpol.io NodeProgramStatus.
    Nodeprogramstatuses,
}

/// `nftpol status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A policy: NAME (a NetworkPolicy in -n, else in the kubeconfig
    /// context's namespace), networkpolicy/NAME, or clusternetworkpolicy/NAME
    /// (cnp/NAME). Without it: every policy (of -n's namespace, if given;
    /// else of every namespace, and the cluster policies).
    #[arg(value_name = "POLICY")]
    pub policy: Option<String>,
    /// The namespace of the NetworkPolicies to show.
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Namespace of the agents' NodeProgramStatus objects (nftpol's namespace).
    #[arg(long, value_name = "NS", default_value = "nftpol")]
    pub status_namespace: String,
    /// Longest a node may lag (or fail) before the check fails; 0s: any lag fails.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub max_lag: std::time::Duration,
    /// Ask again every second until the check passes, at most this long (for CI).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait: Option<std::time::Duration>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: TextOrJson,
    /// Kubeconfig file (looked up as for `nftpol run`).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// `nftpol version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: TextOrJson,
    /// The nft binary to look for.
    #[arg(long, default_value = "nft")]
    pub nft: String,
}

/// `text` or `json`, for the commands that print a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TextOrJson {
    /// A readable report.
    Text,
    /// JSON.
    Json,
}

/// `nftpol completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `nftpol man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write nftpol.1 and one nftpol-COMMAND.1 per command into this
    /// directory instead of printing nftpol.1.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// `nftpol run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// This node's name; pods with this spec.nodeName are enforced.
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// Kubeconfig file. Lookup order, as kubectl's: this flag (that file
    /// only); else the files listed in $KUBECONFIG (colon-separated, merged:
    /// the first file to set a value wins, missing files are skipped); else
    /// ~/.kube/config if it exists; else the in-cluster service account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The nft binary to run.
    #[arg(long, default_value = "nft")]
    pub nft: String,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:9750")]
    pub listen: std::net::SocketAddr,
    /// Minimum time between the starts of two applies: a change to an idle
    /// agent applies at once; changes within this time of an apply's start
    /// are coalesced until they are quiet this long (at most --max-delay).
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pub min_interval: std::time::Duration,
    /// Longest any event waits for its apply (under constant churn, how
    /// often the agent applies: see docs/performance.md). Equal to
    /// --min-interval by default: a burst's first event waits at most that.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pub max_delay: std::time::Duration,
    /// How often to verify the kernel table and repair drift (0s = never).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub resync: std::time::Duration,
    /// Longest one nft call may run; a hung nft is killed (a failed apply, retried).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub nft_timeout: std::time::Duration,
    /// How element changes (pods coming and going) reach the kernel: one
    /// netlink batch from the agent's socket, or an nft process each.
    #[arg(long, value_enum, default_value = "netlink")]
    pub element_updates: ElementUpdates,
    /// /healthz fails once a compile, apply or verify has run this long
    /// (must exceed twice --nft-timeout: an apply may run nft twice).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub liveness_stall: std::time::Duration,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// Shortest time between writes of this node's NodeProgramStatus (read
    /// by `nftpol status`); 0s: never write it.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub status_interval: std::time::Duration,
    /// Namespace of this node's NodeProgramStatus (the agent's own; default:
    /// the service account's namespace, or the kubeconfig context's).
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    pub status_namespace: Option<String>,
    /// Drop logging.
    #[command(flatten)]
    pub drop_log: DropLogArgs,
    /// The new-pod guard.
    #[command(flatten)]
    pub new_pods: NewPodArgs,
    /// Revocation of established flows.
    #[command(flatten)]
    pub revoke: RevokeArgs,
}

/// Revocation of established flows (docs/nftables.md, "Revoking established
/// flows"), shared by `compile`, `apply` and `run`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Evaluate established flows again after every ruleset change, so that a
    /// change denying a flow cuts it within one packet (true|false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL",
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub revoke_established: bool,
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

/// The new-pod guard's flags (docs/nftables.md, "The new-pod window"),
/// shared by `compile`, `apply` and `run`.
#[derive(Debug, Args)]
pub struct NewPodArgs {
    /// Drop traffic from or to an address of the node's pod ranges that is
    /// no known pod's (a pod the agent has not programmed yet); `false`
    /// leaves a new pod unfiltered until its address is programmed.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub fail_closed_new_pods: bool,
    /// A pod address range of this node, in addition to the Node's
    /// spec.podCIDRs (for CNIs that do not use podCIDRs); repeatable.
    #[arg(long = "pod-cidr", value_name = "CIDR", value_parser = parse_cidr)]
    pub pod_cidrs: Vec<crate::core::model::Cidr>,
}

impl NewPodArgs {
    /// The compiler's setting.
    pub fn options(&self) -> crate::core::compile::NewPods {
        crate::core::compile::NewPods {
            fail_closed: self.fail_closed_new_pods,
            pod_cidrs: self.pod_cidrs.clone(),
        }
    }
}

fn parse_cidr(s: &str) -> Result<crate::core::model::Cidr, String> {
    crate::core::model::Cidr::parse(s).map_err(|e| e.to_string())
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
    /// Report unknown fields (which kubectl's strict validation rejects) as
    /// warnings and proceed, instead of failing.
    #[arg(long)]
    pub lenient: bool,
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
    /// Output format: nft (an `nft -f` script) or json (libnftables JSON).
    /// The value is checked by the command, so that the old `-o FILE`
    /// spelling keeps working (with a warning) for one release.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<String>,
    /// Write the ruleset to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Deprecated: use -o/--output.
    #[arg(long, value_enum, hide = true)]
    pub format: Option<Format>,
    /// Print the cost report instead of the ruleset: per node (every
    /// spec.nodeName of the input, or only --node) and for the whole
    /// cluster, the table's size and its predicted load time and
    /// new-connection cost (docs/performance.md, "Cost model"); -o json
    /// prints it as JSON.
    #[arg(long)]
    pub stats: bool,
    /// Drop logging.
    #[command(flatten)]
    pub drop_log: DropLogArgs,
    /// The new-pod guard.
    #[command(flatten)]
    pub new_pods: NewPodArgs,
    /// Revocation of established flows.
    #[command(flatten)]
    pub revoke: RevokeArgs,
    /// Lints.
    #[command(flatten)]
    pub lint: LintArgs,
}

/// What the lints are told beyond the manifests (docs/review.md, "Lint").
#[derive(Debug, Args)]
pub struct LintArgs {
    /// The cluster's Service CIDR (repeatable, one per family): ipBlocks
    /// that include it are flagged, as are those including the ClusterIPs
    /// of the input's Services.
    #[arg(long = "service-cidr", value_name = "CIDR")]
    pub service_cidrs: Vec<String>,
    /// At most this many warnings per lint, then one line saying how many
    /// more there are (0: all).
    #[arg(long = "lint-limit", value_name = "N", default_value_t = 20)]
    pub lint_limit: usize,
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
    /// The new-pod guard.
    #[command(flatten)]
    pub new_pods: NewPodArgs,
    /// Revocation of established flows.
    #[command(flatten)]
    pub revoke: RevokeArgs,
}

/// Manifests read by `explain` and `graph` (no `--node`: they answer the
/// cluster-wide question, each node enforcing its own pods).
#[derive(Debug, Args)]
pub struct ClusterInputArgs {
    /// YAML or JSON files or directories holding Namespaces, Pods and
    /// NetworkPolicies (multi-document, `kind: List`); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Report unknown fields (which kubectl's strict validation rejects) as
    /// warnings and proceed, instead of failing.
    #[arg(long)]
    pub lenient: bool,
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
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: ExplainOutput,
    /// Write the answer to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Exit 1 unless the verdict is this one (for CI checks).
    #[arg(long, value_enum)]
    pub expect: Option<ExpectVerdict>,
    /// Lints.
    #[command(flatten)]
    pub lint: LintArgs,
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
    /// Output format (for a picture: `| dot -Tpng -o graph.png`).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<GraphFormat>,
    /// Write the graph to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Deprecated: use -o/--output.
    #[arg(long, value_enum, hide = true)]
    pub format: Option<GraphFormat>,
    // Filter values are parsed by the command, not by clap, so a bad value
    // exits 1 (invalid input) like every other input error.
    /// Keep this namespace's pods and policies and what explains them: the
    /// policies selecting its pods and their peers, the selectors matching
    /// its pods and the policies naming those (repeatable; filters add up).
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Keep this NetworkPolicy (NS/NAME) or ClusterNetworkPolicy (NAME), the
    /// pods it selects, its peers and the pods they match (repeatable).
    #[arg(long = "policy", value_name = "NS/NAME|NAME")]
    pub policies: Vec<String>,
    /// Keep this pod, the policies selecting it and their peers, the
    /// selectors matching it and the policies naming those (repeatable).
    #[arg(long = "pod", value_name = "NS/NAME")]
    pub pods: Vec<String>,
    /// Draw every pod; by default pods of a namespace that every policy and
    /// selector treats alike are drawn as one group.
    #[arg(long)]
    pub expand_pods: bool,
}

/// When `nftpol diff` fails (exit 1), for a CI gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// When some flow becomes allowed.
    Widen,
    /// When some flow becomes allowed or denied.
    Any,
    /// Never: only report.
    Never,
}

/// `nftpol diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The manifests before the change (e.g. the pull request's base): YAML
    /// or JSON files or directories, as `compile` reads them; `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "BEFORE", required = true, num_args = 1..)]
    pub before: Vec<PathBuf>,
    /// The manifests after the change (e.g. the pull request's head).
    #[arg(long = "against", value_name = "AFTER", required = true, num_args = 1..)]
    pub after: Vec<PathBuf>,
    /// Compare only this node's ruleset (repeatable); by default the ruleset
    /// enforcing every pod, then every node a pod or Node object names.
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Report unknown fields (which kubectl's strict validation rejects) as
    /// warnings and proceed, instead of failing.
    #[arg(long)]
    pub lenient: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: TextOrJson,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Exit 1 when some flow widens (`widen`) or changes at all (`any`),
    /// for a CI gate; `never` only reports.
    #[arg(long, value_enum, default_value = "never")]
    pub fail_on: FailOn,
    /// Drop logging (changes the rulesets compared, not connectivity).
    #[command(flatten)]
    pub drop_log: DropLogArgs,
    /// The new-pod guard (as `compile`).
    #[command(flatten)]
    pub new_pods: NewPodArgs,
    /// Revocation of established flows (as `compile`).
    #[command(flatten)]
    pub revoke: RevokeArgs,
}

impl InputArgs {
    /// How the loader treats unknown fields.
    pub fn unknown_fields(&self) -> crate::core::k8s::UnknownFields {
        crate::core::k8s::UnknownFields::from_lenient(self.lenient)
    }
}

impl LintArgs {
    /// The lints' options; a `--service-cidr` that is not a CIDR is an error naming it.
    pub fn options(&self) -> Result<crate::core::lint::LintOptions, String> {
        let service_cidrs = self
            .service_cidrs
            .iter()
            .map(|c| crate::core::model::Cidr::parse(c).map_err(|e| format!("--service-cidr: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(crate::core::lint::LintOptions {
            service_cidrs,
            limit: (self.lint_limit > 0).then_some(self.lint_limit),
        })
    }
}

impl ClusterInputArgs {
    /// How the loader treats unknown fields.
    pub fn unknown_fields(&self) -> crate::core::k8s::UnknownFields {
        crate::core::k8s::UnknownFields::from_lenient(self.lenient)
    }
}
