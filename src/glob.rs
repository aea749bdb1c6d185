//! Glob patterns as Redis matches them (`KEYS`, `SCAN MATCH`): `*`, `?`,
//! `[abc]`, `[^abc]`, `[a-z]` and `\` to take the next byte literally,
//! over bytes (keys are binary).
//!
//! Redis's own matcher recurses at every `*`, so a pattern like
//! `*a*a*a*a*b` costs exponential time on a long key. This one keeps a
//! single backtrack point (the last `*`), which is enough because a later
//! `*` can absorb anything an earlier one could: linear in the pattern
//! times the key, whatever the pattern.

/// Whether `key` matches `pattern` in full.
pub fn matches(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0usize, 0usize);
    // Where to resume after the last `*`: the pattern just after it, and
    // the key position it is now taken to end at.
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    // Runs of stars are one star.
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, k));
                    continue;
                }
                b'?' => {
                    p += 1;
                    k += 1;
                    continue;
                }
                b'[' => {
                    if let Some((hit, next)) = class(pattern, p, key[k]) {
                        if hit {
                            p = next;
                            k += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == key[k] {
                        p += 2;
                        k += 1;
                        continue;
                    }
                }
                c => {
                    if c == key[k] {
                        p += 1;
                        k += 1;
                        continue;
                    }
                }
            }
        }
        // Mismatch: let the last star absorb one more byte, or fail.
        match star {
            Some((sp, sk)) => {
                star = Some((sp, sk + 1));
                p = sp;
                k = sk + 1;
            }
            None => return false,
        }
    }
    // The key is used up: what is left of the pattern must be stars.
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The class starting at `pattern[open] == b'['` tested against `c`:
/// whether it matches and the pattern index after the class. An
/// unterminated class runs to the end of the pattern, as in Redis.
fn class(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    loop {
        match pattern.get(i) {
            None => break,
            Some(b']') => {
                i += 1;
                break;
            }
            Some(b'\\') if i + 1 < pattern.len() => {
                hit |= pattern[i + 1] == c;
                i += 2;
            }
            Some(&lo) if pattern.get(i + 1) == Some(&b'-') && i + 2 < pattern.len() => {
                let hi = pattern[i + 2];
                let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                hit |= (lo..=hi).contains(&c);
                i += 3;
            }
            Some(&x) => {
                hit |= x == c;
                i += 1;
            }
        }
    }
    Some((hit != negate, i))
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn m(p: &str, k: &str) -> bool {
        matches(p.as_bytes(), k.as_bytes())
    }

    #[test]
    fn the_redis_documentation_examples() {
        // From the KEYS page.
        for k in ["hello", "hallo", "hxllo"] {
            assert!(m("h?llo", k), "{k}");
        }
        for k in ["hllo", "heeeello", "hello"] {
            assert!(m("h*llo", k), "{k}");
        }
        assert!(m("h[ae]llo", "hello") && m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && m("h[^e]llo", "hbllo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hallo") && m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
    }

    #[test]
    fn stars_escapes_and_edges() {
        assert!(m("*", "") && m("*", "anything") && m("**", "x"));
        assert!(!m("", "x") && m("", ""));
        assert!(m("user:*", "user:1") && !m("user:*", "users:1"));
        assert!(m("*:1", "user:1") && m("a*b*c", "aXbYc") && !m("a*b*c", "aXbY"));
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("[\\]]", "]") && m("[z-a]", "q"));
        assert!(m("ab?", "abc") && !m("ab?", "ab"));
        assert!(m("*?", "a") && !m("*?", ""));
        // An unterminated class runs to the end of the pattern.
        assert!(m("[ab", "a") && !m("[ab", "c"));
        // Binary keys.
        assert!(matches(b"k\x00*", b"k\x00\xff"));
    }

    #[test]
    fn a_pathological_pattern_stays_fast() {
        let key = "a".repeat(10_000);
        let pattern = "*a".repeat(50) + "b";
        let t = std::time::Instant::now();
        assert!(!m(&pattern, &key));
        assert!(t.elapsed() < std::time::Duration::from_millis(500));
    }
}
