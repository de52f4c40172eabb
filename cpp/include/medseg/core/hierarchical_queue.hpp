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
#include <vector>

namespace medseg {

template <class Item>
class HierarchicalQueue {
public:
    static constexpr int32_t kChunk = 1024;

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
        pool_[static_cast<size_t>(tail_[level]) * kChunk + tpos_[level]++] = it;
        ++size_;
        if (level < lowest_) lowest_ = level;
    }

    // Pop the oldest item of the lowest non-empty level; the queue must not be empty.
    Item pop(int64_t* level_out = nullptr) {
        while (head_[lowest_] < 0) ++lowest_;
        const int64_t l = lowest_;
        int32_t c = head_[l];
        Item it = pool_[static_cast<size_t>(c) * kChunk + hpos_[l]++];
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
        pool_.resize(pool_.size() + kChunk);
        return c;
    }
    void free_chunk(int32_t c) {
        next_[c] = free_;
        free_ = c;
    }

    std::vector<Item> pool_;
    std::vector<int32_t> next_;
    std::vector<int32_t> head_, tail_;
    std::vector<int32_t> hpos_, tpos_;
    int32_t free_ = -1;
    int64_t lowest_ = 0;
    int64_t size_ = 0;
};

}  // namespace medseg
