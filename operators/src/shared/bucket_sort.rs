//! Sorting values spread evenly over a range: a counting sort into
//! buckets of equal width, then a sort of the few values in each bucket.
//! Linear time on such values (a day's trade times, uniform draws), where a
//! comparison sort costs a logarithm more.

/// `values` in increasing order. `bucket(v)` must be below `buckets` and
/// must not decrease as `v` increases, so that buckets in order hold
/// values in order.
pub(crate) fn bucket_sort<T: Ord + Copy + Default>(
    values: &[T],
    buckets: usize,
    bucket: impl Fn(T) -> usize,
) -> Vec<T> {
    let mut starts = vec![0usize; buckets + 1];
    for &v in values {
        starts[bucket(v) + 1] += 1;
    }
    for b in 0..buckets {
        starts[b + 1] += starts[b];
    }
    let mut sorted = vec![T::default(); values.len()];
    let mut next = starts.clone();
    for &v in values {
        let b = bucket(v);
        sorted[next[b]] = v;
        next[b] += 1;
    }
    for b in 0..buckets {
        sorted[starts[b]..starts[b + 1]].sort_unstable();
    }
    sorted
}
