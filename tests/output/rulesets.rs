//! `rulesets/` holds loadable example outputs (`nft -f rulesets/<case>.nft`,
//! `nft -j -f rulesets/<case>.json`) for people reading what nftpol emits.
//! This test keeps them current: it fails when a file differs from a fresh
//! compile; `UPDATE_RULESETS=1 cargo test --test output rulesets::` rewrites them.

const EXAMPLES: [&str; 6] = [
    "k8s-docs-default-deny-all",
    "k8s-docs-test-network-policy",
    "named-ports",
    "ipblock-except-v6",
    "match-expressions",
    "upstream-xyz",
];

#[test]
fn example_rulesets_are_current() {
    let root = nftpol_testkit::cases::root();
    let update = std::env::var_os("UPDATE_RULESETS").is_some();
    let mut stale = Vec::new();
    for case in EXAMPLES {
        let (objs, diags) = nftpol::core::k8s::load_paths(&[nftpol_testkit::cases::case(case)]);
        assert!(diags.iter().all(|d| !d.is_error()), "{case}: {diags:?}");
        let out = nftpol::core::compile::compile_objects(
            &objs,
            &nftpol::core::compile::Options::default(),
        );
        for (ext, text) in [
            ("nft", nftpol::core::nft::render::script(&out.ruleset)),
            ("json", nftpol::core::nft::json::script(&out.ruleset)),
        ] {
            let path = root.join("rulesets").join(format!("{case}.{ext}"));
            if update {
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale example rulesets (run UPDATE_RULESETS=1 cargo test --test output rulesets::): {stale:?}"
    );
}
