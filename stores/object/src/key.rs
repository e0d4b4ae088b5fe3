//! Store keys ↔ object names: a reversible, order-preserving encoding.
//!
//! object_store's [`Path`] splits on `/`, rejects empty, `.` and `..`
//! segments and control characters, and S3 and Azure advise against
//! `` \ { } ^ % ` [ ] " < > ~ # | `` in names. Keys may hold any of those. So
//! every byte outside a safe set becomes an escape of three characters — an
//! escape character, then the byte in two upper-case hex digits:
//!
//! | bytes | written as |
//! |---|---|
//! | `-`, `0-9`, `A-Z`, `a-y`, and every byte ≥ 0x80 (non-ASCII UTF-8) | themselves |
//! | 0x00–0x2C (controls, space, ``!"#$%&'()*+,``) | `!XX` |
//! | `.` | `.2E` |
//! | `:;<=>?@` | `=XX` |
//! | ``[\]^_` `` | `_XX` |
//! | `z{|}~` and DEL | `zXX` |
//! | `/` | a path delimiter; `.2F` where a delimiter would start an empty segment (at the start, after another `/`); a final `/` is followed by the segment `!` |
//!
//! Each escape character lies in the range of bytes it stands for, so the
//! encoding preserves byte order: `a < b` ⇔ `encode(a) < encode(b)`, and
//! object names list in the order of the original keys. Keys that share a
//! prefix up to a `/` share a directory, so listing `e/orders/` only reads
//! that directory.

use object_store::path::Path;

/// The escape character for `byte`, or `None` if it is written as itself.
fn escape_for(byte: u8) -> Option<u8> {
    match byte {
        b'-' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'y' | 0x80..=0xff => None,
        0x00..=0x2c => Some(b'!'),
        b'.' | b'/' => Some(b'.'),
        b':'..=b'@' => Some(b'='),
        b'['..=b'`' => Some(b'_'),
        b'z'..=0x7f => Some(b'z'),
    }
}

/// `key` as an object name relative to the store's root. `open` encodes a
/// prefix: a final `/` stays a bare delimiter, as more bytes follow it.
pub(crate) fn encode(key: &str, open: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + 8);
    let mut segment_empty = true;
    for &byte in bytes {
        if byte == b'/' && !segment_empty {
            out.push(b'/');
            segment_empty = true;
            continue;
        }
        match escape_for(byte) {
            None => out.push(byte),
            Some(escape) => out.extend([
                escape,
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ]),
        }
        segment_empty = false;
    }
    if segment_empty && !bytes.is_empty() && !open {
        // The key ends in a delimiter: mark the empty last segment.
        out.push(b'!');
    }
    // Only ASCII was added around whole UTF-8 sequences of `key`.
    String::from_utf8(out).unwrap_or_default()
}

/// The key an object name encodes, or `None` for a name this encoding
/// never produces (an object some other program put there).
pub(crate) fn decode(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'!' && (i + 1 == bytes.len()) && out.last() == Some(&b'/') {
            i += 1; // the empty last segment
            continue;
        }
        match escape_for(byte) {
            None => {
                out.push(byte);
                i += 1;
            }
            Some(_) if byte == b'/' => {
                out.push(byte);
                i += 1;
            }
            Some(escape) if escape == byte => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                let decoded = u8::from_str_radix(hex, 16).ok()?;
                if escape_for(decoded) != Some(escape) {
                    return None;
                }
                out.push(decoded);
                i += 3;
            }
            Some(_) => return None,
        }
    }
    let key = String::from_utf8(out).ok()?;
    (encode(&key, false) == name).then_some(key)
}

/// The directory to list for keys starting with `prefix`: the encoded
/// prefix up to its last delimiter (every such key's name lies under it).
pub(crate) fn list_dir(root: &Path, prefix: &str) -> Path {
    let open = encode(prefix, true);
    match open.rfind('/') {
        Some(end) => join(root, &open[..end]),
        None => root.clone(),
    }
}

/// `root/name` for an encoded `name` (which is always a valid path).
pub(crate) fn join(root: &Path, name: &str) -> Path {
    let full = if root.as_ref().is_empty() {
        name.to_owned()
    } else {
        format!("{root}/{name}")
    };
    Path::parse(&full).unwrap_or_else(|_| Path::from(full.as_str()))
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};
    use object_store::path::Path;

    const KEYS: &[&str] = &[
        "",
        "/",
        "//",
        "a",
        "a/",
        "a//",
        "a//b",
        "/a",
        "a/b",
        "a/b/",
        "a.b",
        "a-b",
        "a b",
        "a_b",
        "a%b",
        "a\\b",
        "zz",
        "z",
        "y",
        "~",
        "a/./../c",
        ".",
        "..",
        "grüße/日本語/🦀",
        "100% _under_ %_",
        "quotes ' \" `",
        "e/orders/o1",
        "a!",
        "a!/",
        "a/!",
        "\u{1}",
        "a/\u{0}",
        "a\u{7f}",
        "é",
        "A",
        "@",
        "[",
        "`",
        "{",
    ];

    #[test]
    fn every_key_round_trips_to_a_valid_path() {
        for key in KEYS {
            let name = encode(key, false);
            assert_eq!(decode(&name).as_deref(), Some(*key), "{key:?} as {name:?}");
            if !key.is_empty() {
                assert!(Path::parse(&name).is_ok(), "{key:?} as {name:?}");
                assert_eq!(
                    Path::parse(&name).map(|p| p.to_string()).ok(),
                    Some(name.clone())
                );
            }
        }
    }

    #[test]
    fn encoding_preserves_byte_order() {
        for a in KEYS {
            for b in KEYS {
                assert_eq!(
                    a.cmp(b),
                    encode(a, false).cmp(&encode(b, false)),
                    "{a:?} vs {b:?}: {:?} vs {:?}",
                    encode(a, false),
                    encode(b, false)
                );
            }
        }
    }

    #[test]
    fn keys_with_a_prefix_start_with_its_open_encoding() {
        for a in KEYS {
            for b in KEYS {
                let key = format!("{a}{b}");
                if !b.is_empty() {
                    assert!(
                        encode(&key, false).starts_with(&encode(a, true)),
                        "{a:?} + {b:?}"
                    );
                }
            }
        }
    }

    /// Random keys over an alphabet of the awkward characters.
    fn random_keys(count: usize) -> Vec<String> {
        const ALPHABET: &[char] = &[
            '/', '/', '.', '!', '-', '0', '9', ':', '=', '@', 'A', 'Z', '[', '_', '`', 'a', 'y',
            'z', '{', '~', '\u{7f}', ' ', '\u{1}', 'é', '日', '🦀', '%',
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        (0..count)
            .map(|_| {
                (0..next(7))
                    .map(|_| ALPHABET[next(ALPHABET.len())])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn random_keys_round_trip_in_order() {
        let keys = random_keys(400);
        for a in &keys {
            assert_eq!(
                decode(&encode(a, false)).as_deref(),
                Some(a.as_str()),
                "{a:?}"
            );
            for b in &keys {
                assert_eq!(
                    a.cmp(b),
                    encode(a, false).cmp(&encode(b, false)),
                    "{a:?} vs {b:?}"
                );
                let joined = format!("{a}{b}");
                assert!(
                    encode(&joined, false).starts_with(&encode(a, true)),
                    "{a:?} + {b:?}"
                );
            }
        }
    }

    #[test]
    fn foreign_names_are_refused() {
        for name in ["a b", "a%20b", "!2", "!zz", "a/.", "!2D", "x_4"] {
            assert_eq!(decode(name), None, "{name:?}");
        }
    }
}
