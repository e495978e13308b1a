//! Where the agent's API server credentials come from, in kubectl's order:
//!
//! 1. `--kubeconfig FILE`: that file only (it must exist);
//! 2. else `$KUBECONFIG`: the files it lists (`:`-separated), merged like
//!    kubectl (the first file to set a value or a named entry wins; empty
//!    entries and missing files are skipped; a file that exists but does not
//!    parse is an error);
//! 3. else `~/.kube/config` when it exists;
//! 4. else the in-cluster service account (a DaemonSet pod's normal case).
//!
//! `--context NAME` selects a context of the kubeconfig (default: its
//! `current-context`); with no kubeconfig it is an error, never ignored.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Where the configuration was found, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--kubeconfig`.
    Flag(PathBuf),
    /// The existing files of `$KUBECONFIG`, in order.
    Env(Vec<PathBuf>),
    /// `~/.kube/config`.
    Home(PathBuf),
    /// The in-cluster service account.
    InCluster,
}

/// The kubeconfig to use, and where it came from (`None`: in-cluster).
pub fn load(
    flag: Option<&Path>,
    env: Option<&std::ffi::OsStr>,
    home: Option<&Path>,
) -> anyhow::Result<(Option<Kubeconfig>, Source)> {
    if let Some(path) = flag {
        let kc = Kubeconfig::read_from(path)
            .with_context(|| format!("--kubeconfig {}", path.display()))?;
        return Ok((Some(kc), Source::Flag(path.to_path_buf())));
    }
    if let Some(list) = env {
        let existing: Vec<PathBuf> = std::env::split_paths(list)
            .filter(|p| !p.as_os_str().is_empty() && p.exists())
            .collect();
        if !existing.is_empty() {
            let mut merged = Kubeconfig::default();
            for p in &existing {
                let kc = Kubeconfig::read_from(p)
                    .with_context(|| format!("$KUBECONFIG file {}", p.display()))?;
                merged = merged
                    .merge(kc)
                    .with_context(|| format!("merging $KUBECONFIG file {}", p.display()))?;
            }
            return Ok((Some(merged), Source::Env(existing)));
        }
    }
    if let Some(home) = home {
        let path = home.join(".kube").join("config");
        if path.exists() {
            let kc = Kubeconfig::read_from(&path)
                .with_context(|| format!("kubeconfig {}", path.display()))?;
            return Ok((Some(kc), Source::Home(path)));
        }
    }
    Ok((None, Source::InCluster))
}

/// The client configuration from [`load`]'s result and `--context`.
pub async fn config(
    kubeconfig: Option<Kubeconfig>,
    context: Option<&str>,
) -> anyhow::Result<kube::Config> {
    match kubeconfig {
        Some(kc) => {
            if let Some(name) = context
                && !kc.contexts.iter().any(|c| c.name == name)
            {
                let known: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
                bail!(
                    "--context {name}: no such context in the kubeconfig (it has: {})",
                    known.join(", ")
                );
            }
            let options = KubeConfigOptions {
                context: context.map(str::to_string),
                ..Default::default()
            };
            Ok(kube::Config::from_custom_kubeconfig(kc, &options).await?)
        }
        None => {
            if let Some(name) = context {
                bail!(
                    "--context {name}: no kubeconfig found (--kubeconfig, $KUBECONFIG, ~/.kube/config), and the in-cluster configuration has no contexts"
                );
            }
            Ok(kube::Config::incluster().context("in-cluster configuration (no --kubeconfig, no $KUBECONFIG file, no ~/.kube/config)")?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(dir: &Path, file: &str, current: &str, entries: &[(&str, &str)]) -> PathBuf {
        let mut s =
            format!("apiVersion: v1\nkind: Config\ncurrent-context: {current}\nclusters:\n");
        for (name, server) in entries {
            s.push_str(&format!(
                "- name: {name}\n  cluster: {{server: \"{server}\"}}\n"
            ));
        }
        s.push_str("users:\n");
        for (name, _) in entries {
            s.push_str(&format!("- name: {name}\n  user: {{token: t-{name}}}\n"));
        }
        s.push_str("contexts:\n");
        for (name, _) in entries {
            s.push_str(&format!(
                "- name: {name}\n  context: {{cluster: {name}, user: {name}}}\n"
            ));
        }
        let p = dir.join(file);
        std::fs::write(&p, s).unwrap();
        p
    }

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("nftpol-kubeconfig-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    async fn server(kc: Option<Kubeconfig>, context: Option<&str>) -> anyhow::Result<String> {
        Ok(config(kc, context).await?.cluster_url.to_string())
    }

    #[tokio::test]
    async fn kubeconfig_list_merges_first_wins_and_skips_missing_files() {
        let d = tmp("merge");
        let a = kubeconfig(&d, "a", "red", &[("red", "https://a-red:6443")]);
        let b = kubeconfig(
            &d,
            "b",
            "blue",
            &[
                ("red", "https://b-red:6443"),
                ("blue", "https://b-blue:6443"),
            ],
        );
        let list = std::env::join_paths([d.join("missing"), a.clone(), b.clone()]).unwrap();
        let (kc, src) = load(None, Some(&list), None).unwrap();
        assert_eq!(src, Source::Env(vec![a, b]));
        let kc = kc.unwrap();
        // a's current-context and a's `red` win; b adds `blue`.
        assert_eq!(
            server(Some(kc.clone()), None).await.unwrap(),
            "https://a-red:6443/"
        );
        assert_eq!(
            server(Some(kc.clone()), Some("blue")).await.unwrap(),
            "https://b-blue:6443/"
        );
        let err = server(Some(kc), Some("green"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--context green") && err.contains("red, blue"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn lookup_order_is_flag_then_env_then_home_then_in_cluster() {
        let d = tmp("order");
        let flag = kubeconfig(&d, "flag", "f", &[("f", "https://flag:6443")]);
        let env = kubeconfig(&d, "env", "e", &[("e", "https://env:6443")]);
        std::fs::create_dir_all(d.join(".kube")).unwrap();
        kubeconfig(
            &d.join(".kube"),
            "config",
            "h",
            &[("h", "https://home:6443")],
        );
        let env_list = env.clone().into_os_string();

        let (kc, src) = load(Some(&flag), Some(&env_list), Some(&d)).unwrap();
        assert_eq!(src, Source::Flag(flag.clone()));
        assert_eq!(server(kc, None).await.unwrap(), "https://flag:6443/");

        let (kc, src) = load(None, Some(&env_list), Some(&d)).unwrap();
        assert_eq!(src, Source::Env(vec![env]));
        assert_eq!(server(kc, None).await.unwrap(), "https://env:6443/");

        // $KUBECONFIG naming only missing files falls through, as kubectl does.
        let missing = d.join("nope").into_os_string();
        let (kc, src) = load(None, Some(&missing), Some(&d)).unwrap();
        assert_eq!(src, Source::Home(d.join(".kube/config")));
        assert_eq!(server(kc, None).await.unwrap(), "https://home:6443/");

        let empty = tmp("order-empty");
        let (kc, src) = load(None, None, Some(&empty)).unwrap();
        assert_eq!((kc.is_none(), src), (true, Source::InCluster));
        let err = config(None, Some("x")).await.unwrap_err().to_string();
        assert!(err.contains("--context x"), "{err}");
    }

    #[test]
    fn a_broken_file_is_an_error_naming_it_never_skipped() {
        let d = tmp("broken");
        let bad = d.join("bad");
        std::fs::write(&bad, "clusters: [oops\n").unwrap();
        let err = load(Some(&bad), None, None).unwrap_err();
        assert!(format!("{err:#}").contains("--kubeconfig"), "{err:#}");
        let err = load(None, Some(bad.as_os_str()), None).unwrap_err();
        assert!(format!("{err:#}").contains("$KUBECONFIG file"), "{err:#}");
        let err = load(Some(&d.join("absent")), None, None).unwrap_err();
        assert!(format!("{err:#}").contains("absent"), "{err:#}");
    }
}
