//! Metric names, label values and encoding.

use super::*;

#[test]
fn dropped_packets_is_listed_before_and_after_its_first_sample() {
    let m = Metrics::new();
    assert!(m.encode().contains("# TYPE nftpol_dropped_packets counter"));
    m.dropped_packets.inc(DropLabel {
        namespace: "shop".into(),
        pod: "db".into(),
        direction: "ingress".into(),
    });
    let text = m.encode();
    assert!(
        text.contains(
            "nftpol_dropped_packets_total{namespace=\"shop\",pod=\"db\",direction=\"ingress\"} 1"
        ),
        "{text}"
    );
    assert_eq!(text.matches("# TYPE nftpol_dropped_packets ").count(), 1);
    m.dropped_packets.retain(|l| l.pod != "db");
    assert!(
        !m.encode().contains("pod=\"db\""),
        "a deleted series is gone"
    );
}

#[test]
fn chain_drops_build_info_and_reader_state() {
    let m = Metrics::new();
    let text = m.encode();
    assert!(text.contains("# TYPE nftpol_chain_dropped_packets counter"));
    assert!(text.contains(&format!(
        "nftpol_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        Metrics::COMMIT
    )));
    assert!(text.contains("nftpol_drop_log_reader_state{state=\"off\"} 1"));
    assert!(text.contains("nftpol_drop_log_reader_state{state=\"running\"} 0"));
    m.set_chain_drops(BTreeMap::from([("ingress-group-AAAA".to_string(), 7)]));
    m.set_reader_state(ReaderState::Failed);
    let text = m.encode();
    assert!(
        text.contains("nftpol_chain_dropped_packets_total{chain=\"ingress-group-AAAA\"} 7"),
        "{text}"
    );
    assert!(text.contains("nftpol_drop_log_reader_state{state=\"off\"} 0"));
    assert!(text.contains("nftpol_drop_log_reader_state{state=\"failed\"} 1"));
    m.set_chain_drops(BTreeMap::new());
    assert!(
        !m.encode().contains("ingress-group-AAAA"),
        "a chain that is gone"
    );
}
