//! The plan as a picture sees it: fan-outs and date partitions folded into
//! one box per declaration (`features[*]@* ×150`), edges between boxes
//! labelled with the input names they carry.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use quiver_operators::Effect;

use crate::plan::{Plan, PlanNode};

/// What a box stands for, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Source,
    Transform,
    Sink,
}

impl Kind {
    pub fn of(node: &PlanNode) -> Self {
        if node.effect == Effect::Sink {
            Kind::Sink
        } else if node.inputs.is_empty() {
            Kind::Source
        } else {
            Kind::Transform
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Sink => "sink",
        }
    }
}

/// Nodes declared alike: one node, or every instance of a fan-out or a
/// partitioned node.
#[derive(Debug, Clone)]
pub struct Group {
    /// `features[*].prices@*`: the node ids with each fan-out key as `*`
    /// and the partition day as `*`.
    pub key: String,
    /// Plan node indexes, in plan order.
    pub members: Vec<usize>,
    /// The members' operator: nodes of one key and different operators
    /// (a day's fetch and the window of days around it) are two groups.
    pub op: String,
    pub kind: Kind,
    /// Declarations merged into the members.
    pub merged: usize,
}

impl Group {
    /// `features[*]@* ×150`, or the node's id for a group of one.
    pub fn label(&self, plan: &Plan) -> String {
        match self.members.as_slice() {
            [one] => plan.graph[petgraph::graph::NodeIndex::new(*one)].id.clone(),
            many => format!("{} ×{}", self.key, many.len()),
        }
    }
}

/// An edge between two groups: every input of a member of `to` that
/// reads a member of `from`.
#[derive(Debug, Clone)]
pub struct GroupEdge {
    pub from: usize,
    pub to: usize,
    /// The input names, in the order first seen.
    pub names: Vec<String>,
    /// Plan edges folded into this one.
    pub count: usize,
}

impl GroupEdge {
    /// `prices`, `trades, prices`, `prices ×150`, or for many names (a
    /// union's days) `2026-01-05 … 2026-01-09 ×5`.
    pub fn label(&self) -> String {
        let names = match self.names.as_slice() {
            [first, _, _, .., last] => format!("{first} … {last}"),
            few => few.join(", "),
        };
        if self.count > 1 {
            format!("{names} ×{}", self.count)
        } else {
            names
        }
    }
}

#[derive(Debug, Clone)]
pub struct View {
    pub groups: Vec<Group>,
    /// The group of each plan node.
    pub group_of: Vec<usize>,
    pub edges: Vec<GroupEdge>,
}

/// `features[ACB].prices@2026-01-05` → `features[*].prices@*`.
pub fn group_key(id: &str) -> String {
    let (body, day) = match id.rsplit_once('@') {
        Some((body, _)) => (body, "@*"),
        None => (id, ""),
    };
    let mut key = String::with_capacity(body.len() + 2);
    let mut depth = 0usize;
    for c in body.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    key.push_str("[*");
                }
                depth += 1;
            }
            ']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    key.push(']');
                }
            }
            _ if depth > 0 => {}
            _ => key.push(c),
        }
    }
    key.push_str(day);
    key
}

impl View {
    pub fn of(plan: &Plan) -> Self {
        let mut by_key: IndexMap<(String, &str), usize> = IndexMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut group_of = Vec::with_capacity(plan.graph.node_count());
        for (i, node) in plan.nodes() {
            let key = group_key(&node.id);
            let g = *by_key.entry((key.clone(), &node.op)).or_insert_with(|| {
                groups.push(Group {
                    key,
                    members: Vec::new(),
                    op: node.op.clone(),
                    kind: Kind::of(node),
                    merged: 0,
                });
                groups.len() - 1
            });
            let group = &mut groups[g];
            group.members.push(i.index());
            group.merged += node.aliases.len();
            group_of.push(g);
        }
        let mut edges: BTreeMap<(usize, usize), GroupEdge> = BTreeMap::new();
        for (i, node) in plan.nodes() {
            let to = group_of[i.index()];
            for input in &node.inputs {
                for source in input.source.nodes() {
                    let from = group_of[source.index()];
                    let edge = edges.entry((from, to)).or_insert_with(|| GroupEdge {
                        from,
                        to,
                        names: Vec::new(),
                        count: 0,
                    });
                    edge.count += 1;
                    if !edge.names.contains(&input.name) {
                        edge.names.push(input.name.clone());
                    }
                }
            }
        }
        View {
            groups,
            group_of,
            edges: edges.into_values().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::group_key;

    #[test]
    fn keys_fold_fan_out_keys_and_days() {
        assert_eq!(group_key("features[ACB]@2026-01-05"), "features[*]@*");
        assert_eq!(
            group_key("features[ACB].prices@2026-01-05"),
            "features[*].prices@*"
        );
        assert_eq!(group_key("weights.info[VNM]"), "weights.info[*]");
        assert_eq!(group_key("a[x[1]].b"), "a[*].b");
        assert_eq!(group_key("save"), "save");
    }
}
