//! Go `path/filepath.Match` semantics (Unix flavour), used for `tenant_matcher_type: glob`.
//!
//! Written against Go's documented grammar and behaviour rather than a Rust glob crate because
//! the details differ between implementations and tenants must land on the same ring as in
//! Thanos: `*` and `?` never match `/` (a class can), `[^...]` negates (`!` does not), `\`
//! escapes, there is no `**` or `{a,b}`, and matching runs over bytes, decoding a UTF-8 rune only
//! for `?` and classes, including Go's greedy per-chunk search.

/// Path separator that `*` and `?` refuse to match.
const SEPARATOR: u8 = b'/';

/// The pattern does not follow Go's glob grammar (Go's `ErrBadPattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadPattern;

/// Checks a pattern once, so matching later cannot fail.
///
/// Go reports `ErrBadPattern` for a malformed pattern whatever the name, and matching the empty
/// name visits every chunk of the pattern.
pub(crate) fn validate(pattern: &str) -> Result<(), BadPattern> {
    go_match(pattern.as_bytes(), b"").map(drop)
}

/// Whether `name` matches a pattern that passed [`validate`].
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    go_match(pattern.as_bytes(), name.as_bytes()) == Ok(true)
}

/// `filepath.Match(pattern, name)`.
fn go_match(mut pattern: &[u8], mut name: &[u8]) -> Result<bool, BadPattern> {
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing star takes the rest of the name, unless that crosses a separator.
            return Ok(!name.contains(&SEPARATOR));
        }
        // The last chunk must consume the whole name; earlier ones take the leftmost fit,
        // which is enough because every chunk matches a fixed number of runes.
        if let Some(after) = match_chunk(chunk, name)?
            && (after.is_empty() || !pattern.is_empty())
        {
            name = after;
            continue;
        }
        if star {
            // Let the star swallow one more byte at a time, never a separator.
            for skip in 1..=name.len() {
                if name[skip - 1] == SEPARATOR {
                    break;
                }
                if let Some(after) = match_chunk(chunk, &name[skip..])? {
                    if pattern.is_empty() && !after.is_empty() {
                        continue;
                    }
                    name = after;
                    continue 'chunks;
                }
            }
        }
        // No match; Go still reports a malformed remainder.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            match_chunk(chunk, b"")?;
            pattern = rest;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off leading stars and the following star-free chunk (a `*` inside `[...]` is literal).
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let stars = pattern.iter().take_while(|&&b| b == b'*').count();
    let pattern = &pattern[stars..];
    let mut in_class = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            // The escaped byte is skipped; a dangling `\` is reported by match_chunk.
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'*' if !in_class => break,
            _ => {}
        }
        i += 1;
    }
    (stars > 0, &pattern[..i], &pattern[i..])
}

/// Matches a star-free chunk against the start of `s`, returning what follows the match.
///
/// After a mismatch the chunk is still parsed to the end so that a malformed pattern is always
/// reported, as Go does.
fn match_chunk<'s>(mut chunk: &[u8], mut s: &'s [u8]) -> Result<Option<&'s [u8]>, BadPattern> {
    let mut failed = false;
    while let Some(&op) = chunk.first() {
        failed |= s.is_empty();
        match op {
            b'[' => {
                let rune = if failed {
                    None
                } else {
                    let (r, n) = decode_rune(s);
                    s = &s[n..];
                    Some(r)
                };
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut hit = false;
                let mut ranges = 0;
                loop {
                    if ranges > 0 && chunk.first() == Some(&b']') {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = class_char(chunk)?;
                    let (hi, rest) = match rest.split_first() {
                        Some((b'-', after)) => class_char(after)?,
                        _ => (lo, rest),
                    };
                    chunk = rest;
                    hit |= rune.is_some_and(|r| lo <= r && r <= hi);
                    ranges += 1;
                }
                failed |= hit == negated;
            }
            b'?' => {
                if !failed {
                    failed = s[0] == SEPARATOR;
                    s = &s[decode_rune(s).1..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let literal = if op == b'\\' {
                    chunk = &chunk[1..];
                    *chunk.first().ok_or(BadPattern)?
                } else {
                    op
                };
                if !failed {
                    failed = s[0] != literal;
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok((!failed).then_some(s))
}

/// One possibly escaped character of a class (Go's `getEsc`); something must follow it.
fn class_char(chunk: &[u8]) -> Result<(u32, &[u8]), BadPattern> {
    let chunk = match chunk.first() {
        None | Some(b'-' | b']') => return Err(BadPattern),
        Some(b'\\') => &chunk[1..],
        Some(_) => chunk,
    };
    if chunk.is_empty() {
        return Err(BadPattern);
    }
    let (r, n) = decode_rune(chunk);
    let rest = &chunk[n..];
    if (r == REPLACEMENT && n == 1) || rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

/// U+FFFD, what Go decodes an invalid byte to.
const REPLACEMENT: u32 = 0xfffd;

/// Go's `utf8.DecodeRune` on a non-empty slice: the first rune and its length, (U+FFFD, 1) if invalid.
///
/// Needed on bytes because a star advances byte by byte and may leave `s` mid-rune.
fn decode_rune(s: &[u8]) -> (u32, usize) {
    let head = &s[..s.len().min(4)];
    match head
        .utf8_chunks()
        .next()
        .and_then(|c| c.valid().chars().next())
    {
        Some(c) => (u32::from(c), c.len_utf8()),
        None => (REPLACEMENT, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(pattern: &str, name: &str) -> Result<bool, BadPattern> {
        go_match(pattern.as_bytes(), name.as_bytes())
    }

    /// Cases from Go's `path/filepath` match tests (expected results are Go's).
    #[test]
    fn go_match_cases() {
        let bad = Err(BadPattern);
        let cases: &[(&str, &str, Result<bool, BadPattern>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", bad),
            ("[-]", "-", bad),
            ("[x-]", "x", bad),
            ("[x-]", "-", bad),
            ("[x-]", "z", bad),
            ("[-x]", "x", bad),
            ("[-x]", "-", bad),
            ("[-x]", "a", bad),
            ("\\", "a", bad),
            ("[a-b-c]", "a", bad),
            ("[", "a", bad),
            ("[^", "a", bad),
            ("[^bc", "a", bad),
            ("a[", "a", bad),
            ("a[", "ab", bad),
            ("a[", "x", bad),
            ("a/b[", "x", bad),
            ("*x", "xxx", Ok(true)),
        ];
        for &(pattern, name, want) in cases {
            assert_eq!(go(pattern, name), want, "Match({pattern:?}, {name:?})");
        }
    }

    #[test]
    fn classes_may_match_the_separator() {
        assert_eq!(go("a[/]b", "a/b"), Ok(true));
        assert_eq!(go("a[^x]b", "a/b"), Ok(true));
    }

    #[test]
    fn bang_does_not_negate() {
        assert_eq!(go("[!a]", "!"), Ok(true));
        assert_eq!(go("[!a]", "b"), Ok(false));
    }

    #[test]
    fn star_steps_bytes_like_go() {
        // Go's star advances one byte at a time, so `?` can start inside a multi-byte rune and
        // eat single continuation bytes: "€" is 3 bytes and matches "*??" in Go.
        assert_eq!(go("*??", "€"), Ok(true));
        assert_eq!(go("??", "€"), Ok(false));
    }

    #[test]
    fn malformed_rest_is_reported_even_without_match() {
        assert_eq!(go("x*[", "abc"), Err(BadPattern));
        assert_eq!(validate("team-*"), Ok(()));
        assert_eq!(validate("team-["), Err(BadPattern));
        assert_eq!(validate("trailing\\"), Err(BadPattern));
    }

    #[test]
    fn tenant_style_patterns() {
        assert!(matches("team-*", "team-a"));
        assert!(!matches("team-*", "team-a/b"));
        assert!(matches("tenant-?", "tenant-1"));
        assert!(!matches("tenant-?", "tenant-10"));
        assert!(matches("prod-[0-9][0-9]", "prod-42"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
    }
}
