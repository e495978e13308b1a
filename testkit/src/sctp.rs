//! Hand-built SCTP packets (RFC 9260): just enough for an INIT / INIT-ACK exchange over raw
//! sockets, because this kernel has no SCTP sockets (`CONFIG_IP_SCTP` unset).

/// IP protocol number of SCTP.
pub const IPPROTO_SCTP: i32 = 132;
/// Chunk type of INIT.
pub const CHUNK_INIT: u8 = 1;
/// Chunk type of INIT ACK.
pub const CHUNK_INIT_ACK: u8 = 2;
/// Chunk type of ABORT.
pub const CHUNK_ABORT: u8 = 6;
/// Parameter type of the State Cookie carried by INIT ACK.
const PARAM_STATE_COOKIE: u16 = 7;

const COMMON_HEADER: usize = 12;
const INIT_FIXED: usize = 20;

/// How the checksum field of an outgoing packet is filled, to test receivers' checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumMode {
    /// CRC32c stored little-endian, as Linux `sctp_compute_cksum` does.
    Correct,
    /// The right CRC32c stored big-endian (the classic mistake).
    ByteSwapped,
    /// All zeroes.
    Zero,
}

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            // 0x82F63B78 is the bit-reflected Castagnoli polynomial 0x1EDC6F41.
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC32C: [u32; 256] = crc32c_table();

/// CRC32c (Castagnoli), as used by SCTP and iSCSI; `crc32c(b"123456789") == 0xE306_9283`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32C[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The checksum a packet should carry: CRC32c over the whole packet with the field zeroed.
fn packet_crc(packet: &[u8]) -> u32 {
    let mut copy = packet.to_vec();
    copy[8..12].fill(0);
    crc32c(&copy)
}

fn seal(packet: &mut [u8], mode: ChecksumMode) {
    packet[8..12].fill(0);
    let crc = crc32c(packet);
    let bytes = match mode {
        ChecksumMode::Correct => crc.to_le_bytes(),
        ChecksumMode::ByteSwapped => crc.to_be_bytes(),
        ChecksumMode::Zero => [0; 4],
    };
    packet[8..12].copy_from_slice(&bytes);
}

fn common_header(sport: u16, dport: u16, vtag: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p
}

fn init_like(chunk: u8, initiate_tag: u32, tsn: u32, params_len: u16) -> Vec<u8> {
    let mut c = Vec::with_capacity(INIT_FIXED);
    c.push(chunk);
    c.push(0);
    c.extend_from_slice(&(INIT_FIXED as u16 + params_len).to_be_bytes());
    c.extend_from_slice(&initiate_tag.to_be_bytes());
    c.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
    c.extend_from_slice(&10u16.to_be_bytes()); // outbound streams
    c.extend_from_slice(&10u16.to_be_bytes()); // max inbound streams
    c.extend_from_slice(&tsn.to_be_bytes());
    c
}

/// An INIT packet (verification tag 0, as RFC 9260 requires) from `sport` to `dport`.
pub fn build_init(
    sport: u16,
    dport: u16,
    initiate_tag: u32,
    tsn: u32,
    mode: ChecksumMode,
) -> Vec<u8> {
    let mut p = common_header(sport, dport, 0);
    p.extend(init_like(CHUNK_INIT, initiate_tag, tsn, 0));
    seal(&mut p, mode);
    p
}

/// An INIT ACK answering an INIT whose initiate tag was `peer_tag`, with a 16-byte State Cookie.
pub fn build_init_ack(sport: u16, dport: u16, peer_tag: u32, own_tag: u32, tsn: u32) -> Vec<u8> {
    let cookie = [
        0x6e, 0x66, 0x74, 0x70, 0x6f, 0x6c, 0x2d, 0x74, 0x65, 0x73, 0x74, 0, 0, 0, 0, 0,
    ];
    let param_len = 4 + cookie.len() as u16;
    let mut p = common_header(sport, dport, peer_tag);
    p.extend(init_like(CHUNK_INIT_ACK, own_tag, tsn, param_len));
    p.extend_from_slice(&PARAM_STATE_COOKIE.to_be_bytes());
    p.extend_from_slice(&param_len.to_be_bytes());
    p.extend_from_slice(&cookie);
    seal(&mut p, ChecksumMode::Correct);
    p
}

/// The parts of a received packet the probes and responders look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Verification tag from the common header.
    pub vtag: u32,
    /// Whether the checksum field holds the little-endian CRC32c.
    pub checksum_ok: bool,
    /// Type of the first chunk.
    pub chunk: u8,
    /// Initiate tag, when the first chunk is a well-formed INIT or INIT ACK.
    pub initiate_tag: Option<u32>,
}

/// Parses an SCTP packet (starting at the common header); `None` when it is too short.
pub fn parse(packet: &[u8]) -> Option<Parsed> {
    if packet.len() < COMMON_HEADER + 4 {
        return None;
    }
    let be16 = |o: usize| u16::from_be_bytes([packet[o], packet[o + 1]]);
    let be32 = |o: usize| u32::from_be_bytes(packet[o..o + 4].try_into().unwrap());
    let stored = u32::from_le_bytes(packet[8..12].try_into().unwrap());
    let chunk = packet[COMMON_HEADER];
    let chunk_len = be16(COMMON_HEADER + 2) as usize;
    let initiate_tag = (matches!(chunk, CHUNK_INIT | CHUNK_INIT_ACK)
        && chunk_len >= INIT_FIXED
        && packet.len() >= COMMON_HEADER + INIT_FIXED)
        .then(|| be32(COMMON_HEADER + 4));
    Some(Parsed {
        sport: be16(0),
        dport: be16(2),
        vtag: be32(4),
        checksum_ok: stored == packet_crc(packet),
        chunk,
        initiate_tag,
    })
}

/// Strips the IPv4 header that raw IPv4 sockets hand back; returns (source, SCTP bytes).
pub fn strip_ipv4(datagram: &[u8]) -> Option<(std::net::Ipv4Addr, &[u8])> {
    if datagram.len() < 20 || datagram[0] >> 4 != 4 {
        return None;
    }
    let ihl = (datagram[0] & 0x0f) as usize * 4;
    let src = std::net::Ipv4Addr::new(datagram[12], datagram[13], datagram[14], datagram[15]);
    datagram.get(ihl..).map(|rest| (src, rest))
}
