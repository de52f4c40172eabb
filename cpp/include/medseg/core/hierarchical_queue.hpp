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

// RadixHeap<Item>: a monotone priority queue on unique 64-bit keys (Ahuja,
// Mehlhorn, Orlin & Tarjan, "Faster algorithms for the shortest path problem",
// JACM 1990): a pushed key must not be below the last popped key.  Items sit in
// 65 buckets by the highest bit in which their key differs from the last popped
// key; a pop refills bucket 0 from the lowest non-empty bucket.  Amortised
// O(log C) cheap operations, 8 + sizeof(Item) bytes per queued item.  With
// unique keys the pop order is exactly ascending key order.
template <class Item>
class RadixHeap {
public:
    bool empty() const { return size_ == 0; }
    void push(uint64_t key, const Item& it) {
        b_[bucket(key ^ last_)].push_back({key, it});
        ++size_;
    }
    Item pop(uint64_t* key_out = nullptr) {
        if (b_[0].empty()) {
            int i = 1;
            while (b_[i].empty()) ++i;
            uint64_t mn = b_[i][0].first;
            for (const auto& e : b_[i]) mn = std::min(mn, e.first);
            last_ = mn;
            for (const auto& e : b_[i]) b_[bucket(e.first ^ last_)].push_back(e);
            b_[i].clear();
        }
        auto e = b_[0].back();
        b_[0].pop_back();
        --size_;
        if (key_out) *key_out = e.first;
        return e.second;
    }

private:
    static int bucket(uint64_t x) { return x == 0 ? 0 : 64 - __builtin_clzll(x); }
    std::vector<std::pair<uint64_t, Item>> b_[65];
    uint64_t last_ = 0;
    int64_t size_ = 0;
};

}  // namespace medseg
