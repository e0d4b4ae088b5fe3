//! Object names ↔ file names for [`LocalFiles`](crate::LocalFiles).
//!
//! An object store is flat: `a/b` and `a/b/c` may both be objects, and a
//! name segment may be as long as the whole name. A file system is a tree
//! whose entries are either files or directories, each name at most 255
//! bytes. So a file's name ends with `~f`, which no directory's does, and
//! a segment longer than [`PIECE`] bytes is cut into pieces, each in the
//! directory of the one before and each but the first starting with `~c`.
//! A `~` of the name itself is written `~~`.
//!
//! | object | file |
//! |---|---|
//! | `a/b` | `a/b~f` |
//! | `a/b/c` | `a/b/c~f` |
//! | `a/x~y` | `a/x~~y~f` |
//! | `a/` + 300 × `k` | `a/` + 200 × `k` + `/~c` + 100 × `k` + `~f` |

use object_store::path::{Path, PathPart};

/// The longest piece of a segment in one file name, in bytes, marker
/// excluded.
const PIECE: usize = 200;

/// `object` as the name of its file.
pub(crate) fn file(object: &Path) -> Path {
    names(object, true)
}

/// `prefix` as the name of the directory holding its objects.
pub(crate) fn dir(prefix: &Path) -> Path {
    names(prefix, false)
}

fn names(path: &Path, file: bool) -> Path {
    let segments: Vec<PathPart<'_>> = path.parts().collect();
    let last = segments.len().saturating_sub(1);
    let mut out = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let mut pieces = pieces(segment.as_ref());
        if file
            && i == last
            && let Some(end) = pieces.last_mut()
        {
            end.push_str("~f");
        }
        out.extend(pieces);
    }
    // No piece is empty, `.` or `..`, nor holds `/` or a control
    // character: the first is a whole segment or PIECE bytes long, the
    // others start with `~c`.
    Path::parse(out.join("/")).expect("file names are valid paths")
}

/// `segment` escaped and cut into pieces, each but the first marked `~c`.
fn pieces(segment: &str) -> Vec<String> {
    let mut pieces = vec![String::new()];
    for c in segment.chars() {
        let unit = if c == '~' {
            "~~".to_owned()
        } else {
            c.to_string()
        };
        if pieces.last().is_some_and(|p| p.len() + unit.len() > PIECE) {
            pieces.push("~c".to_owned());
        }
        pieces.last_mut().expect("never empty").push_str(&unit);
    }
    pieces
}

/// The object whose file is `file`, or `None` if `file` is not named as
/// [`file`] names them (the lock file, a directory, a staging file).
pub(crate) fn object(file: &Path) -> Option<Path> {
    let parts: Vec<PathPart<'_>> = file.parts().collect();
    let (last, dirs) = parts.split_last()?;
    let mut segments: Vec<String> = Vec::new();
    for (i, part) in dirs.iter().chain([last]).enumerate() {
        let mut piece = part.as_ref();
        let continued = piece.starts_with("~c");
        if continued {
            piece = &piece[2..];
        }
        if i == dirs.len() {
            piece = piece.strip_suffix("~f")?;
        }
        let text = unescape(piece)?;
        match segments.last_mut() {
            Some(segment) if continued => segment.push_str(&text),
            None if continued => return None,
            _ => segments.push(text),
        }
    }
    if segments.iter().any(String::is_empty) {
        return None;
    }
    Path::parse(segments.join("/")).ok()
}

/// One file-name piece without its markers, unescaped; `None` if it holds
/// a `~` that does not escape one.
fn unescape(piece: &str) -> Option<String> {
    let mut text = String::with_capacity(piece.len());
    let mut chars = piece.chars();
    while let Some(c) = chars.next() {
        if c == '~' && chars.next()? != '~' {
            return None;
        }
        text.push(c);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(name: &str) -> String {
        let named = Path::parse(name).expect("a valid name");
        let file = file(&named);
        assert_eq!(object(&file).as_ref(), Some(&named), "{name} via {file}");
        file.to_string()
    }

    #[test]
    fn files_and_directories_never_share_a_name() {
        assert_eq!(round_trip("a/b"), "a/b~f");
        assert_eq!(round_trip("a/b/c"), "a/b/c~f");
        assert_eq!(dir(&Path::parse("a/b").expect("path")).to_string(), "a/b");
        assert_eq!(round_trip("a/x~y~"), "a/x~~y~~~f");
        assert_eq!(round_trip("a/~c"), "a/~~c~f");
    }

    #[test]
    fn long_segments_are_cut_into_pieces_that_fit_a_file_name() {
        let name = format!("a/{}é{}", "k".repeat(199), "k".repeat(300));
        let file = round_trip(&name);
        assert!(
            file.split('/').all(|piece| piece.len() <= PIECE + 2),
            "{file}"
        );
        assert_eq!(file.split('/').count(), 4, "{file}");
        let dots = format!("a/{}..", "k".repeat(200));
        assert!(round_trip(&dots).ends_with("/~c..~f"));
        let dir = dir(&Path::parse(&dots).expect("path"));
        assert!(dir.as_ref().ends_with("/~c.."), "{dir}");
        let tildes = format!("a/{}", "~".repeat(150));
        let file = round_trip(&tildes);
        assert!(
            file.split('/').all(|piece| piece.len() <= PIECE + 2),
            "{file}"
        );
    }

    #[test]
    fn names_not_made_by_file_are_not_objects() {
        for name in [
            ".exactly-cas.lock",
            "a/b",
            "~cb~f",
            "a/b~x~f",
            "a/b~f/c~f",
            "a/b#1",
            "a/~f",
        ] {
            let path = Path::parse(name).expect("path");
            assert_eq!(object(&path), None, "{name}");
        }
    }
}
