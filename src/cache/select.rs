//! `--select`, in dbt's syntax: `index` the node alone, `index+` it and
//! everything downstream, `+index` it and everything upstream, `+index+`
//! both, a number to limit the depth (`2+index`, `index+1`), and `*` in a
//! name for any text (`features[*]`). Several selectors select their union.

use petgraph::Direction;
use petgraph::graph::NodeIndex;

use crate::diag::did_you_mean;
use crate::plan::Plan;

/// One parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    pattern: String,
    /// Levels upstream to add: `None` for none, `Some(None)` for all.
    up: Option<Option<usize>>,
    down: Option<Option<usize>>,
}

fn parse(text: &str) -> Result<Selector, String> {
    // `2+` before the name, `+1` after it: a depth, or every level.
    let depth = |digits: &str| -> Result<Option<usize>, String> {
        match digits {
            "" => Ok(None),
            d => d
                .parse()
                .map(Some)
                .map_err(|_| format!("bad depth in '{text}'")),
        }
    };
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mut rest = text.trim();
    let mut up = None;
    if let Some(plus) = rest.find('+')
        && digits(&rest[..plus])
    {
        up = Some(depth(&rest[..plus])?);
        rest = &rest[plus + 1..];
    }
    let mut down = None;
    if let Some(plus) = rest.rfind('+')
        && digits(&rest[plus + 1..])
    {
        down = Some(depth(&rest[plus + 1..])?);
        rest = &rest[..plus];
    }
    if rest.is_empty() {
        return Err(format!("'{text}' names no node"));
    }
    Ok(Selector {
        pattern: rest.to_string(),
        up,
        down,
    })
}

/// Which nodes of `plan` the selectors pick, as a mask by node index. Each
/// argument may hold several selectors separated by spaces or commas.
pub fn select(plan: &Plan, args: &[String]) -> Result<Vec<bool>, String> {
    let mut mask = vec![false; plan.graph.node_count()];
    for text in args.iter().flat_map(|a| a.split([' ', ','])) {
        if text.trim().is_empty() {
            continue;
        }
        let sel = parse(text)?;
        let roots: Vec<NodeIndex> = plan
            .nodes()
            .filter(|(_, n)| n.names().any(|name| matches(&sel.pattern, name)))
            .map(|(i, _)| i)
            .collect();
        if roots.is_empty() {
            let names = plan.nodes().flat_map(|(_, n)| n.names());
            return Err(format!(
                "--select {text}: no node is named '{}'{}",
                sel.pattern,
                did_you_mean(&sel.pattern, names)
            ));
        }
        for &root in &roots {
            mask[root.index()] = true;
            if let Some(depth) = sel.up {
                walk(plan, root, Direction::Incoming, depth, &mut mask);
            }
            if let Some(depth) = sel.down {
                walk(plan, root, Direction::Outgoing, depth, &mut mask);
            }
        }
    }
    Ok(mask)
}

fn walk(plan: &Plan, root: NodeIndex, dir: Direction, depth: Option<usize>, mask: &mut [bool]) {
    let mut frontier = vec![root];
    let mut level = 0;
    let mut seen = vec![false; mask.len()];
    while !frontier.is_empty() && depth.is_none_or(|d| level < d) {
        let mut next = Vec::new();
        for n in frontier {
            for m in plan.graph.neighbors_directed(n, dir) {
                if !seen[m.index()] {
                    seen[m.index()] = true;
                    mask[m.index()] = true;
                    next.push(m);
                }
            }
        }
        frontier = next;
        level += 1;
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any text.
fn matches(pattern: &str, name: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(mut tail) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    for (k, part) in parts.iter().enumerate() {
        if k == parts.len() - 1 {
            return tail.ends_with(part);
        }
        match tail.find(part) {
            Some(at) => tail = &tail[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dbt_selectors() {
        let s = parse("index+").unwrap();
        assert_eq!(
            (s.pattern.as_str(), s.up, s.down),
            ("index", None, Some(None))
        );
        let s = parse("+index").unwrap();
        assert_eq!(
            (s.pattern.as_str(), s.up, s.down),
            ("index", Some(None), None)
        );
        let s = parse("2+features[FPT]+1").unwrap();
        assert_eq!(
            (s.pattern.as_str(), s.up, s.down),
            ("features[FPT]", Some(Some(2)), Some(Some(1)))
        );
        assert!(parse("+").is_err());
    }

    #[test]
    fn stars_match_any_text() {
        assert!(matches("features[*]", "features[FPT]"));
        assert!(matches("*[FPT]", "bars[FPT]"));
        assert!(!matches("features[*]", "bars[FPT]"));
        assert!(matches("index", "index"));
        assert!(!matches("index", "index2"));
    }
}
