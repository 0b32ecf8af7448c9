//! A ledger line: the event's JSON with a CRC32C of it in front, so that a damaged byte anywhere in a line is
//! told from a line a crash cut short. Owns the line format and its version; nothing here touches a file.

use super::Event;

/// Format version written in the header: 2 puts a checksum on every line (`sum`, CRC32C of the event's
/// JSON); version 1 ledgers, without them, are still read.
pub const VERSION: u32 = 2;

/// One ledger line: `{"sum":"CRC32C",` and the event's JSON after its `{`, then a newline. The sum covers the
/// event's JSON exactly as `serde_json` writes it, so a damaged byte anywhere in the line is told from a line a
/// crash cut short (which has no newline). The field comes first so that `jq` still reads every line.
pub fn encode(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(event)?;
    let mut line = Vec::with_capacity(json.len() + SUM_PREFIX + 1);
    line.extend_from_slice(format!("{{\"sum\":\"{:08x}\",", crc32c::crc32c(&json)).as_bytes());
    line.extend_from_slice(&json[1..]);
    line.push(b'\n');
    Ok(line)
}

/// Bytes of `{"sum":"XXXXXXXX",`.
pub(super) const SUM_PREFIX: usize = 18;

/// Where a line's event starts after its checksum: `Ok(Some(18))` when the sum is there and right, `Ok(None)`
/// when the line has none (version 1), `Err` when it is there and wrong.
pub(super) fn check_sum(line: &[u8]) -> Result<Option<usize>, String> {
    let Some(rest) = line.strip_prefix(br#"{"sum":""#) else { return Ok(None) };
    let (hex, body) = (rest.get(..8), rest.get(8..));
    let (Some(hex), Some(body)) = (hex, body.and_then(|b| b.strip_prefix(b"\",".as_slice()))) else {
        return Err("its checksum is cut".into());
    };
    // Exactly as written (lower-case hex): `from_str_radix` alone would take a flipped case bit for the same sum.
    let written = hex.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let expected = std::str::from_utf8(hex).ok().filter(|_| written).and_then(|h| u32::from_str_radix(h, 16).ok());
    let actual = crc32c::crc32c_append(crc32c::crc32c(b"{"), body);
    match expected {
        Some(sum) if sum == actual => Ok(Some(SUM_PREFIX)),
        _ => Err("its checksum does not match its content (the line was damaged)".into()),
    }
}
