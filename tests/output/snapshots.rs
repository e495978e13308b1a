//! Golden tests: every `testdata/<case>/` compiles to the ruleset stored in
//! `snapshots/<case>.snap` (all pods enforced) and `snapshots/<case>@node-1.snap`
//! (the DaemonSet's view on node-1). The diagnostics, lints included, are
//! part of the snapshot (the `testdata/lint-*` cases exist for them).
//! A changed or missing snapshot fails (CI runs with INSTA_UPDATE=no).

use std::path::Path;

use nftpol::core::compile::Options;

use nftpol_testkit::cases;

/// Compiles a case the way `nftpol compile` does and renders script + diagnostics.
fn render_case(dir: &Path, node: Option<&str>) -> String {
    let (objs, load) = nftpol::core::k8s::load_paths(&[dir.to_path_buf()]);
    let out = nftpol::core::compile::compile_and_lint(
        &objs,
        &Options {
            node: node.map(str::to_string),
            ..Default::default()
        },
        &Default::default(),
    );
    let root = cases::root();
    let mut s = String::new();
    for d in load.iter().chain(&out.diagnostics) {
        // Paths relative to the repo, so snapshots do not depend on the checkout location.
        let line = d.to_string().replace(&format!("{}/", root.display()), "");
        s.push_str(&format!("# {line}\n"));
    }
    s.push_str(&nftpol::core::nft::render::script(&out.ruleset));
    s
}

#[test]
fn every_case_matches_its_snapshot() {
    let cases = cases::case_dirs();
    assert!(
        cases.len() >= 20,
        "expected the testdata cases, found {}",
        cases.len()
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(cases::root().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for dir in &cases {
            let name = dir.file_name().unwrap().to_str().unwrap().to_string();
            settings_for(&name, || {
                insta::assert_snapshot!(name.clone(), render_case(dir, None));
                insta::assert_snapshot!(format!("{name}@node-1"), render_case(dir, Some("node-1")));
            });
        }
    });
}

fn settings_for(case: &str, f: impl FnOnce()) {
    let mut s = insta::Settings::clone_current();
    s.set_input_file(Path::new("testdata").join(case));
    s.bind(f);
}

#[test]
fn output_is_byte_identical_across_runs() {
    for dir in cases::case_dirs() {
        let a = render_case(&dir, None);
        let b = render_case(&dir, None);
        assert_eq!(a, b, "{} differs between two compiles", dir.display());
    }
}

#[test]
fn input_order_does_not_change_output() {
    // Objects of a case given in reverse document order compile identically.
    for dir in cases::case_dirs() {
        let (objs, _) = nftpol::core::k8s::load_paths(std::slice::from_ref(&dir));
        let mut rev = objs.clone();
        rev.namespaces.reverse();
        rev.pods.reverse();
        rev.policies.reverse();
        let a = nftpol::core::compile::compile_objects(&objs, &Options::default());
        let b = nftpol::core::compile::compile_objects(&rev, &Options::default());
        assert_eq!(
            nftpol::core::nft::render::script(&a.ruleset),
            nftpol::core::nft::render::script(&b.ruleset),
            "{}: document order changed the ruleset",
            dir.display()
        );
    }
}
