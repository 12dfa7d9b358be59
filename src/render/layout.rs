//! A layered layout for a picture of the graph, top to bottom: each box on
//! the layer after the deepest box it reads, boxes within a layer ordered
//! to cross few edges (barycentre sweeps), layers centred.
//!
//! The HTML plan repeats only the last step, placing boxes from their
//! layer and order, when a group is expanded and its box grows.

/// Horizontal space between boxes of a layer.
pub const GAP_X: f64 = 28.0;
/// Vertical space between layers, room for edge labels.
pub const GAP_Y: f64 = 64.0;
/// The margin around the picture.
pub const MARGIN: f64 = 20.0;

/// Where each box goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub layer: Vec<usize>,
    /// Position within its layer, from the left.
    pub order: Vec<usize>,
    /// Top-left corners.
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub width: f64,
    pub height: f64,
}

/// Lays out `sizes.len()` boxes of the given (width, height). Boxes are
/// numbered in a topological order of `edges` (from → to); an edge that
/// points backwards, or a box to itself, is drawn but does not place boxes.
pub fn layout(sizes: &[(f64, f64)], edges: &[(usize, usize)]) -> Layout {
    let n = sizes.len();
    let mut layer = vec![0usize; n];
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(from, to) in edges {
        if from < to {
            preds[to].push(from);
            succs[from].push(to);
        }
    }
    for v in 0..n {
        layer[v] = preds[v].iter().map(|&p| layer[p] + 1).max().unwrap_or(0);
    }
    let layers = layer.iter().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for v in 0..n {
        rows[layer[v]].push(v);
    }
    let mut order = vec![0usize; n];
    let number = |rows: &[Vec<usize>], order: &mut [usize]| {
        for row in rows {
            for (i, &v) in row.iter().enumerate() {
                order[v] = i;
            }
        }
    };
    number(&rows, &mut order);
    // Down and up sweeps: each box moves to the mean position of the
    // boxes it is joined to on the layers already placed.
    for sweep in 0..8 {
        let down = sweep % 2 == 0;
        let sequence: Vec<usize> = if down {
            (1..layers).collect()
        } else {
            (0..layers.saturating_sub(1)).rev().collect()
        };
        for l in sequence {
            let neighbours = if down { &preds } else { &succs };
            let mut keyed: Vec<(f64, usize)> = rows[l]
                .iter()
                .map(|&v| {
                    let near = &neighbours[v];
                    let key = if near.is_empty() {
                        order[v] as f64
                    } else {
                        near.iter().map(|&u| order[u] as f64).sum::<f64>() / near.len() as f64
                    };
                    (key, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            rows[l] = keyed.into_iter().map(|(_, v)| v).collect();
            for (i, &v) in rows[l].iter().enumerate() {
                order[v] = i;
            }
        }
    }
    let (x, y, width, height) = place(sizes, &rows);
    Layout {
        layer,
        order,
        x,
        y,
        width,
        height,
    }
}

/// Top-left corners: layers stacked, each centred on the widest.
fn place(sizes: &[(f64, f64)], rows: &[Vec<usize>]) -> (Vec<f64>, Vec<f64>, f64, f64) {
    let n = sizes.len();
    let (mut x, mut y) = (vec![0.0; n], vec![0.0; n]);
    let row_width = |row: &Vec<usize>| {
        row.iter().map(|&v| sizes[v].0).sum::<f64>() + GAP_X * row.len().saturating_sub(1) as f64
    };
    let widest = rows.iter().map(row_width).fold(0.0, f64::max);
    let mut top = MARGIN;
    for row in rows {
        let mut left = MARGIN + (widest - row_width(row)) / 2.0;
        let tallest = row.iter().map(|&v| sizes[v].1).fold(0.0, f64::max);
        for &v in row {
            x[v] = left;
            y[v] = top + (tallest - sizes[v].1) / 2.0;
            left += sizes[v].0 + GAP_X;
        }
        top += tallest + GAP_Y;
    }
    let height = if rows.is_empty() {
        2.0 * MARGIN
    } else {
        top - GAP_Y + MARGIN
    };
    (x, y, widest + 2.0 * MARGIN, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_go_below_what_they_read_and_layers_do_not_overlap() {
        // a → c, b → c, c → d, a → d
        let sizes = vec![(100.0, 40.0); 4];
        let l = layout(&sizes, &[(0, 2), (1, 2), (2, 3), (0, 3)]);
        assert_eq!(l.layer, vec![0, 0, 1, 2]);
        assert!(l.y[2] >= l.y[0] + 40.0 + GAP_Y);
        assert!(l.y[3] >= l.y[2] + 40.0 + GAP_Y);
        assert!((l.x[0] - l.x[1]).abs() >= 100.0 + GAP_X);
        assert_eq!(l.width, 2.0 * 100.0 + GAP_X + 2.0 * MARGIN);
    }

    #[test]
    fn sweeps_uncross_two_chains() {
        // Two chains declared crosswise: 0 → 3, 1 → 2.
        let sizes = vec![(50.0, 20.0); 4];
        let l = layout(&sizes, &[(0, 3), (1, 2)]);
        assert!(l.x[3] < l.x[2], "{l:?}");
    }

    #[test]
    fn back_edges_and_self_loops_do_not_move_boxes() {
        let sizes = vec![(50.0, 20.0); 2];
        let l = layout(&sizes, &[(0, 1), (1, 1), (1, 0)]);
        assert_eq!(l.layer, vec![0, 1]);
    }
}
