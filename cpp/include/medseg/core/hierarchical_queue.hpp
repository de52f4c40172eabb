// medseg/core/hierarchical_queue.hpp — priority queues with FIFO order among equal keys.
//
// Flooding algorithms (watershed, seeded growing ordered by intensity) pop the
// element of lowest priority and, among equal priorities, the one pushed first
// ("insertion age"; Meyer 1991 and Beucher & Meyer 1993 call the bucket form a
// hierarchical queue).
//
// HierarchicalQueue<Item>: one FIFO per integer level (e.g. 256 or 65536 for
//    8/16-bit images).  The FIFOs are singly linked chunks of `kChunk` items taken
//    from one shared pool with a free list, so memory is the live items rounded
//    up to a chunk per non-empty level — never the total number of pushes.  A
//    push below the current lowest level lowers it (the pop is always of the
//    lowest non-empty level), so the order is exactly (level, push order).
//    Pops are in exactly (level, push order), the order of a binary heap on
//    (key, age) with strictly increasing ages, so a caller may swap one for the
//    other without changing results.
// BucketedMonotoneQueue<Entry>: the same order for keys too wide for one level
//    each (32/64-bit image bits), when keys are monotone (see below).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

namespace medseg {

template <class Item>
class HierarchicalQueue {
public:
    static constexpr int32_t kChunk = 64;  // small: one partial chunk per used level is the overhead

    explicit HierarchicalQueue(int64_t levels) : head_(levels), tail_(levels), hpos_(levels, 0), tpos_(levels, 0) {
        std::fill(head_.begin(), head_.end(), -1);
        std::fill(tail_.begin(), tail_.end(), -1);
        lowest_ = levels;
    }

    bool empty() const { return size_ == 0; }
    int64_t size() const { return size_; }

    void push(int64_t level, const Item& it) {
        if (tail_[level] < 0 || tpos_[level] == kChunk) {
            int32_t c = new_chunk();
            if (tail_[level] < 0) {
                head_[level] = c;
                hpos_[level] = 0;
            } else {
                next_[tail_[level]] = c;
            }
            tail_[level] = c;
            tpos_[level] = 0;
        }
        pool_[tail_[level]][tpos_[level]++] = it;
        ++size_;
        if (level < lowest_) lowest_ = level;
    }

    // Lowest non-empty level; the queue must not be empty.
    int64_t lowest_level() {
        while (head_[lowest_] < 0) ++lowest_;
        return lowest_;
    }

    // Call f(item) for all items of `level`, in push order, and empty the level.
    template <class F>
    void drain_level(int64_t level, F&& f) {
        int32_t c = head_[level];
        int32_t b = hpos_[level];
        while (c >= 0) {
            const bool last = c == tail_[level];
            const int32_t e = last ? tpos_[level] : kChunk;
            const Item* items = pool_[c].get();
            for (int32_t k = b; k < e; ++k) f(items[k]);
            size_ -= e - b;
            const int32_t nxt = last ? -1 : next_[c];
            free_chunk(c);
            c = nxt;
            b = 0;
        }
        head_[level] = tail_[level] = -1;
    }

    // Append all items of `level`, in push order, to `out` and empty the level.
    template <class Vec>
    void take_level(int64_t level, Vec& out) {
        drain_level(level, [&](const Item& it) { out.push_back(it); });
    }

    // Pop the oldest item of the lowest non-empty level; the queue must not be empty.
    Item pop(int64_t* level_out = nullptr) {
        while (head_[lowest_] < 0) ++lowest_;
        const int64_t l = lowest_;
        int32_t c = head_[l];
        Item it = pool_[c][hpos_[l]++];
        --size_;
        if (c == tail_[l] && hpos_[l] == tpos_[l]) {  // level now empty
            free_chunk(c);
            head_[l] = tail_[l] = -1;
        } else if (hpos_[l] == kChunk) {
            head_[l] = next_[c];
            hpos_[l] = 0;
            free_chunk(c);
        }
        if (level_out) *level_out = l;
        return it;
    }

private:
    int32_t new_chunk() {
        if (free_ >= 0) {
            int32_t c = free_;
            free_ = next_[c];
            next_[c] = -1;
            return c;
        }
        int32_t c = static_cast<int32_t>(next_.size());
        next_.push_back(-1);
        pool_.emplace_back(new Item[kChunk]);  // chunks never move: no reallocation peak
        return c;
    }
    void free_chunk(int32_t c) {
        next_[c] = free_;
        free_ = c;
    }

    std::vector<std::unique_ptr<Item[]>> pool_;
    std::vector<int32_t> next_;
    std::vector<int32_t> head_, tail_;
    std::vector<int32_t> hpos_, tpos_;
    int32_t free_ = -1;
    int64_t lowest_ = 0;
    int64_t size_ = 0;
};

// BucketedMonotoneQueue<Entry, LevelOf>: a monotone priority queue (a pushed key
// is never below the last popped key, as in flooding with the max() rule)
// popping in exactly (key, push order) — the order of a binary heap on (key,
// age) with strictly increasing ages — at O(1) amortised cost per entry.
// `Entry` has an unsigned integer member `key` (e.g. order-preserving image
// bits); level_of(key) maps it to [0, levels), non-decreasing in the key (a
// coarse quantisation, e.g. 65536 value bins: any monotone map is exact, a good
// one is fast).  Levels are split into 256 "fine" levels per "coarse" level,
// so a push writes to one of at most 2 x 256 FIFO tails (cache-resident):
//   - coarse levels above the current one: FIFOs in a HierarchicalQueue;
//   - fine levels of the current coarse level above the current fine level:
//     FIFOs in a second one, filled (in push order) when the coarse level
//     becomes current;
//   - the current fine level: its FIFO, stable-sorted by key when it becomes
//     current (the "run"), then pushes with the last popped key go to a FIFO
//     (plateaus, neighbours below the flood level) and larger keys to a small
//     binary heap on (key, push order).
// Among entries of the current key the run is older than the heap, the heap
// older than the FIFO, so popping run, heap, FIFO in that order, then the
// smaller of run and heap (the run on equal keys), is exactly (key, age).
// Multi-level bucket queues for monotone keys: Denardo & Fox, "Shortest-route
// methods: 1. Reaching, pruning, and buckets", Operations Research 27 (1979);
// Cherkassky, Goldberg & Silverstein, "Buckets, heaps, lists, and monotone
// priority queues", SIAM J. Computing 28 (1999).
template <class Entry, class LevelOf>
class BucketedMonotoneQueue {
public:
    using Key = decltype(Entry::key);
    static constexpr int kFineBits = 8;

    BucketedMonotoneQueue(int64_t levels, LevelOf level_of)
        : coarse_(std::max<int64_t>(1, (levels + (1 << kFineBits) - 1) >> kFineBits)),
          fine_(int64_t(1) << kFineBits),
          level_of_(level_of) {}

    bool empty() const { return size_ == 0; }

    void push(const Entry& e) {
        ++size_;
        if (e.key == cur_ && level_ >= 0) {  // the current key (so the current level)
            fifo_.push_back(e);
            return;
        }
        const int64_t lv = level_of_(e.key);
        if (lv == level_) {
            heap_.push_back({e, seq_++});
            std::push_heap(heap_.begin(), heap_.end(), later);
        } else if ((lv >> kFineBits) == coarse_level_) {
            fine_.push(lv & kFineMask, e);
        } else {
            coarse_.push(lv >> kFineBits, e);
        }
    }

    // The queue must not be empty.
    Entry pop() {
        --size_;
        if (rp_ < run_.size() && run_[rp_].key == cur_) return run_[rp_++];
        if (!heap_.empty() && heap_.front().e.key == cur_) return pop_heap();
        if (fp_ < fifo_.size()) {
            const Entry e = fifo_[fp_++];
            if (fp_ >= 4096 && 2 * fp_ >= fifo_.size()) {  // reclaim the consumed front (amortised O(1))
                fifo_.erase(fifo_.begin(), fifo_.begin() + static_cast<std::ptrdiff_t>(fp_));
                fp_ = 0;
            }
            return e;
        }
        fifo_.clear();
        fp_ = 0;
        const bool has_run = rp_ < run_.size();
        if (has_run && (heap_.empty() || run_[rp_].key <= heap_.front().e.key)) {
            cur_ = run_[rp_].key;
            return run_[rp_++];
        }
        if (!heap_.empty()) {
            cur_ = heap_.front().e.key;
            return pop_heap();
        }
        // the current level is exhausted: the next non-empty one becomes current
        run_.clear();
        rp_ = 0;
        if (fine_.empty()) {
            coarse_level_ = coarse_.lowest_level();
            coarse_.drain_level(coarse_level_, [&](const Entry& e) { fine_.push(level_of_(e.key) & kFineMask, e); });
        }
        const int64_t f = fine_.lowest_level();
        level_ = (coarse_level_ << kFineBits) + f;
        fine_.take_level(f, run_);
        sort_run();
        cur_ = run_[0].key;
        return run_[rp_++];
    }

    // Calls f(entry) for entries likely to pop in about `d` pops (to prefetch their data).
    template <class F>
    void upcoming(size_t d, F&& f) const {
        if (rp_ + d < run_.size()) f(run_[rp_ + d]);
        if (fp_ + d < fifo_.size()) f(fifo_[fp_ + d]);
    }

private:
    static constexpr int64_t kFineMask = (int64_t(1) << kFineBits) - 1;
    struct HeapEntry {
        Entry e;
        uint64_t seq;
    };
    static bool later(const HeapEntry& a, const HeapEntry& b) {
        return a.e.key != b.e.key ? a.e.key > b.e.key : a.seq > b.seq;
    }
    Entry pop_heap() {
        std::pop_heap(heap_.begin(), heap_.end(), later);
        const Entry e = heap_.back().e;
        heap_.pop_back();
        return e;
    }
    // Stable sort of the run by key: insertion sort when short, a counting sort
    // when the keys span a small range (the usual case: a level is a narrow
    // value bin), else std::stable_sort.
    void sort_run() {
        const size_t m = run_.size();
        if (m <= 32) {
            for (size_t i = 1; i < m; ++i) {
                const Entry e = run_[i];
                size_t j = i;
                for (; j > 0 && e.key < run_[j - 1].key; --j) run_[j] = run_[j - 1];
                run_[j] = e;
            }
            return;
        }
        Key lo = run_[0].key, hi = lo;
        for (const Entry& e : run_) {
            lo = std::min(lo, e.key);
            hi = std::max(hi, e.key);
        }
        if (lo == hi) return;
        const uint64_t range = static_cast<uint64_t>(hi - lo) + 1;
        if (range > 4 * m + 1024) {
            std::stable_sort(run_.begin(), run_.end(), [](const Entry& a, const Entry& b) { return a.key < b.key; });
            return;
        }
        count_.assign(static_cast<size_t>(range) + 1, 0);
        for (const Entry& e : run_) ++count_[static_cast<size_t>(e.key - lo) + 1];
        for (size_t k = 1; k <= range; ++k) count_[k] += count_[k - 1];
        tmp_.resize(m);
        for (const Entry& e : run_) tmp_[count_[static_cast<size_t>(e.key - lo)]++] = e;
        run_.swap(tmp_);
    }

    HierarchicalQueue<Entry> coarse_, fine_;
    LevelOf level_of_;
    std::vector<Entry> run_, fifo_, tmp_;
    std::vector<uint32_t> count_;
    std::vector<HeapEntry> heap_;
    size_t rp_ = 0, fp_ = 0;
    Key cur_ = 0;
    int64_t level_ = -1, coarse_level_ = -1;
    uint64_t seq_ = 0;
    int64_t size_ = 0;
};

}  // namespace medseg
