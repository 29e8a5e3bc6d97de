//! Bit-exact ports of the libstdc++ algorithms behind TensorFlow's `gtl::TopN`.
//!
//! TensorFlow's CTC beam search keeps its beam in a `gtl::TopN<BeamEntry*>`, whose order of
//! equal-scored entries is decided by `std::sort`, `std::make_heap`, `std::push_heap`,
//! `std::pop_heap` and `std::sort_heap` from libstdc++ (the C++ library TensorFlow's Linux
//! wheels link). None of these is stable, so when two prefixes have exactly the same score the
//! decoded result depends on the precise sequence of element moves. Everything here therefore
//! follows `bits/stl_heap.h` and `bits/stl_algo.h` step by step, with `cmp` being the
//! "greater" predicate TensorFlow passes (`a.total > b.total`).

/// `std::__push_heap`: sift `value` up from `hole` towards `top`.
fn push_heap_hole<F: Fn(u32, u32) -> bool>(
    v: &mut [u32],
    mut hole: usize,
    top: usize,
    value: u32,
    cmp: &F,
) {
    while hole > top {
        let parent = (hole - 1) / 2;
        if !cmp(v[parent], value) {
            break;
        }
        v[hole] = v[parent];
        hole = parent;
    }
    v[hole] = value;
}

/// `std::__adjust_heap` on `v[..len]`.
fn adjust_heap<F: Fn(u32, u32) -> bool>(
    v: &mut [u32],
    mut hole: usize,
    len: usize,
    value: u32,
    cmp: &F,
) {
    let top = hole;
    let mut second = hole;
    while len >= 1 && second < (len - 1) / 2 {
        second = 2 * (second + 1);
        if cmp(v[second], v[second - 1]) {
            second -= 1;
        }
        v[hole] = v[second];
        hole = second;
    }
    if len >= 2 && len % 2 == 0 && second == (len - 2) / 2 {
        second = 2 * (second + 1);
        v[hole] = v[second - 1];
        hole = second - 1;
    }
    push_heap_hole(v, hole, top, value, cmp);
}

/// `std::__pop_heap(first, last, result)`: moves the top to `result`, re-heaps `v[..last]`
/// with the old `v[result]` inserted.
fn pop_heap_to<F: Fn(u32, u32) -> bool>(v: &mut [u32], last: usize, result: usize, cmp: &F) {
    let value = v[result];
    v[result] = v[0];
    adjust_heap(v, 0, last, value, cmp);
}

/// `std::make_heap`.
pub(crate) fn make_heap<F: Fn(u32, u32) -> bool>(v: &mut [u32], cmp: &F) {
    let len = v.len();
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let value = v[parent];
        adjust_heap(v, parent, len, value, cmp);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

/// `std::push_heap`: the last element joins the heap formed by the others.
pub(crate) fn push_heap<F: Fn(u32, u32) -> bool>(v: &mut [u32], cmp: &F) {
    if let Some(&value) = v.last() {
        push_heap_hole(v, v.len() - 1, 0, value, cmp);
    }
}

/// `std::pop_heap`: the top moves to the end, the rest stays a heap.
pub(crate) fn pop_heap<F: Fn(u32, u32) -> bool>(v: &mut [u32], cmp: &F) {
    let len = v.len();
    if len > 1 {
        pop_heap_to(v, len - 1, len - 1, cmp);
    }
}

/// `std::sort_heap`.
pub(crate) fn sort_heap<F: Fn(u32, u32) -> bool>(v: &mut [u32], cmp: &F) {
    let mut last = v.len();
    while last > 1 {
        last -= 1;
        pop_heap_to(v, last, last, cmp);
    }
}

/// libstdc++'s `_S_threshold`.
const THRESHOLD: usize = 16;

/// `std::sort` (introsort, median-of-three pivot, heap-sort fallback, final insertion sort).
pub(crate) fn sort<F: Fn(u32, u32) -> bool>(v: &mut [u32], cmp: &F) {
    let n = v.len();
    if n == 0 {
        return;
    }
    let depth = 2 * (usize::BITS - 1 - n.leading_zeros()) as usize;
    introsort_loop(v, 0, n, depth, cmp);
    final_insertion_sort(v, cmp);
}

fn introsort_loop<F: Fn(u32, u32) -> bool>(
    v: &mut [u32],
    first: usize,
    mut last: usize,
    mut depth: usize,
    cmp: &F,
) {
    while last - first > THRESHOLD {
        if depth == 0 {
            partial_sort(&mut v[first..last], cmp);
            return;
        }
        depth -= 1;
        let cut = unguarded_partition_pivot(v, first, last, cmp);
        introsort_loop(v, cut, last, depth, cmp);
        last = cut;
    }
}

/// `std::__partial_sort(first, last, last)` = heap select + sort_heap over the whole range.
fn partial_sort<F: Fn(u32, u32) -> bool>(v: &mut [u32], cmp: &F) {
    // __heap_select with middle == last only builds the heap.
    make_heap(v, cmp);
    sort_heap(v, cmp);
}

fn unguarded_partition_pivot<F: Fn(u32, u32) -> bool>(
    v: &mut [u32],
    first: usize,
    last: usize,
    cmp: &F,
) -> usize {
    let mid = first + (last - first) / 2;
    move_median_to_first(v, first, first + 1, mid, last - 1, cmp);
    unguarded_partition(v, first + 1, last, first, cmp)
}

fn move_median_to_first<F: Fn(u32, u32) -> bool>(
    v: &mut [u32],
    result: usize,
    a: usize,
    b: usize,
    c: usize,
    cmp: &F,
) {
    let pick = if cmp(v[a], v[b]) {
        if cmp(v[b], v[c]) {
            b
        } else if cmp(v[a], v[c]) {
            c
        } else {
            a
        }
    } else if cmp(v[a], v[c]) {
        a
    } else if cmp(v[b], v[c]) {
        c
    } else {
        b
    };
    v.swap(result, pick);
}

fn unguarded_partition<F: Fn(u32, u32) -> bool>(
    v: &mut [u32],
    mut first: usize,
    mut last: usize,
    pivot: usize,
    cmp: &F,
) -> usize {
    loop {
        while cmp(v[first], v[pivot]) {
            first += 1;
        }
        last -= 1;
        while cmp(v[pivot], v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        v.swap(first, last);
        first += 1;
    }
}

fn final_insertion_sort<F: Fn(u32, u32) -> bool>(v: &mut [u32], cmp: &F) {
    if v.len() > THRESHOLD {
        insertion_sort(&mut v[..THRESHOLD], cmp);
        for i in THRESHOLD..v.len() {
            unguarded_linear_insert(v, i, cmp);
        }
    } else {
        insertion_sort(v, cmp);
    }
}

fn insertion_sort<F: Fn(u32, u32) -> bool>(v: &mut [u32], cmp: &F) {
    for i in 1..v.len() {
        if cmp(v[i], v[0]) {
            let val = v[i];
            v.copy_within(0..i, 1);
            v[0] = val;
        } else {
            unguarded_linear_insert(v, i, cmp);
        }
    }
}

fn unguarded_linear_insert<F: Fn(u32, u32) -> bool>(v: &mut [u32], mut last: usize, cmp: &F) {
    let val = v[last];
    while cmp(val, v[last - 1]) {
        v[last] = v[last - 1];
        last -= 1;
    }
    v[last] = val;
}

/// The three states of `gtl::TopN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Unordered,
    BottomKnown,
    HeapSorted,
}

/// Port of TensorFlow's `gtl::TopN<T, Cmp>` (the version shipped with TF 2.21, whose heap
/// holds exactly `limit` elements) over `u32` handles. The comparator is passed to every call
/// because the keys (beam scores) live elsewhere and change between calls.
#[derive(Debug)]
pub(crate) struct TopN {
    elements: Vec<u32>,
    limit: usize,
    state: State,
}

impl TopN {
    /// An empty `TopN` keeping at most `limit` elements.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            elements: Vec::with_capacity(limit.min(1 << 16) + 1),
            limit,
            state: State::Unordered,
        }
    }

    /// Number of elements held (at most `limit`).
    pub(crate) fn size(&self) -> usize {
        self.elements.len()
    }

    /// Whether `peek_bottom` would rearrange the elements (the `UNORDERED` state).
    pub(crate) fn is_unordered(&self) -> bool {
        self.state == State::Unordered
    }

    /// `TopN::push`.
    pub(crate) fn push<F: Fn(u32, u32) -> bool>(&mut self, v: u32, cmp: &F) {
        if self.limit == 0 {
            return;
        }
        if self.state != State::HeapSorted {
            // May hold limit + 1 elements for a moment, to find and drop the smallest.
            self.elements.push(v);
            let last = self.elements.len() - 1;
            if self.elements.len() > self.limit {
                make_heap(&mut self.elements, cmp);
                pop_heap(&mut self.elements, cmp);
                self.elements.pop();
                self.state = State::HeapSorted;
            } else if self.state != State::Unordered && !cmp(self.elements[last], self.elements[0])
            {
                // Keep the bottom at position 0 (BOTTOM_KNOWN).
                self.elements.swap(0, last);
            }
        } else if cmp(v, self.elements[0]) {
            // Remove the smallest element of the min-heap, then push the new one.
            pop_heap(&mut self.elements, cmp);
            let last = self.elements.len() - 1;
            self.elements[last] = v;
            push_heap(&mut self.elements, cmp);
        }
    }

    /// `TopN::peek_bottom` (may move the lowest element to the front). `None` when empty.
    pub(crate) fn peek_bottom<F: Fn(u32, u32) -> bool>(&mut self, cmp: &F) -> Option<u32> {
        if self.elements.is_empty() {
            return None;
        }
        if self.state == State::Unordered {
            let mut min = 0;
            for i in 1..self.elements.len() {
                if cmp(self.elements[min], self.elements[i]) {
                    min = i;
                }
            }
            if min != 0 {
                self.elements.swap(0, min);
            }
            self.state = State::BottomKnown;
        }
        Some(self.elements[0])
    }

    /// `TopN::Extract` followed by `TopN::Reset`: the held elements, best first, go to `out`.
    pub(crate) fn extract_into<F: Fn(u32, u32) -> bool>(&mut self, out: &mut Vec<u32>, cmp: &F) {
        out.clear();
        std::mem::swap(out, &mut self.elements);
        if self.state != State::HeapSorted {
            sort(out, cmp);
        } else {
            sort_heap(out, cmp);
        }
        self.reset();
    }

    /// The held elements in storage order (`unsorted_begin()..unsorted_end()`).
    pub(crate) fn unsorted(&self) -> &[u32] {
        &self.elements
    }

    /// `TopN::Reset`.
    pub(crate) fn reset(&mut self) {
        self.elements.clear();
        self.state = State::Unordered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator for test keys.
    fn keys(n: usize, distinct: u32, seed: u64) -> Vec<u32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as u32) % distinct
            })
            .collect()
    }

    #[test]
    fn sort_orders_descending_for_all_sizes() {
        for n in 0..80 {
            let k = keys(n, 7, n as u64);
            let cmp = |a: u32, b: u32| k[a as usize] > k[b as usize];
            let mut v: Vec<u32> = (0..n as u32).collect();
            sort(&mut v, &cmp);
            assert!(
                v.windows(2).all(|w| k[w[0] as usize] >= k[w[1] as usize]),
                "n={n}"
            );
            let mut seen = v.clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..n as u32).collect::<Vec<_>>());
        }
    }

    #[test]
    fn heap_sort_orders_descending() {
        for n in 0..40 {
            let k = keys(n, 5, 100 + n as u64);
            let cmp = |a: u32, b: u32| k[a as usize] > k[b as usize];
            let mut v: Vec<u32> = (0..n as u32).collect();
            make_heap(&mut v, &cmp);
            if n > 0 {
                // The top of a heap under a "greater" predicate is a minimum.
                let top = k[v[0] as usize];
                assert!(k.iter().all(|&x| x >= top));
            }
            sort_heap(&mut v, &cmp);
            assert!(
                v.windows(2).all(|w| k[w[0] as usize] >= k[w[1] as usize]),
                "n={n}"
            );
        }
    }

    #[test]
    fn insertion_sort_keeps_equal_elements_in_order() {
        // libstdc++'s insertion sort (used for <= 16 elements) is stable.
        let k = [1u32, 3, 1, 3, 2, 1];
        let cmp = |a: u32, b: u32| k[a as usize] > k[b as usize];
        let mut v: Vec<u32> = (0..6).collect();
        sort(&mut v, &cmp);
        assert_eq!(v, vec![1, 3, 4, 0, 2, 5]);
    }

    #[test]
    fn top_n_keeps_the_largest() {
        let k = keys(50, 1000, 9);
        let cmp = |a: u32, b: u32| k[a as usize] > k[b as usize];
        let mut top = TopN::new(5);
        for i in 0..50 {
            top.push(i, &cmp);
        }
        assert_eq!(top.size(), 5);
        let mut out = Vec::new();
        top.extract_into(&mut out, &cmp);
        let mut want: Vec<u32> = k.clone();
        want.sort_unstable_by(|a, b| b.cmp(a));
        let got: Vec<u32> = out.iter().map(|&i| k[i as usize]).collect();
        assert_eq!(got, want[..5].to_vec());
        assert_eq!(top.size(), 0);
    }

    #[test]
    fn peek_bottom_finds_the_minimum_and_push_keeps_it_in_front() {
        let k = [5u32, 2, 9, 7];
        let cmp = |a: u32, b: u32| k[a as usize] > k[b as usize];
        let mut top = TopN::new(4);
        for i in 0..3 {
            top.push(i, &cmp);
        }
        assert!(top.is_unordered());
        assert_eq!(top.peek_bottom(&cmp), Some(1));
        assert!(!top.is_unordered());
        top.push(3, &cmp);
        assert_eq!(top.peek_bottom(&cmp), Some(1));
        assert_eq!(TopN::new(3).peek_bottom(&cmp), None);
    }
}
