// bindings/register_pool.cpp — a bounded pool of output buffers.
//
// Why.  A large output (a 256^3 float32 threshold image: 64 MiB) is fresh memory
// from the OS, which zeroes every page at its first write: on the project's
// 2-core Zen 4 VM that costs ~3 ms of a 16 ms local mean and ~3 ms of a 9 ms 3D
// Sobel.  glibc returns allocations above its mmap threshold (32 MiB at most) to
// the OS at free, so a loop over volumes pays this on every call.  The pool keeps
// the buffers of outputs that Python has freed (up to a byte limit) and hands
// them to the next output of a fitting size, with their pages still mapped; the
// idea of CuPy's memory pool, for host memory and bounded by default.
//
// How.  An output of at least 4 MiB (kDefaultMinBytes) is allocated here, 2 MiB aligned and
// madvise(MADV_HUGEPAGE)d as numpy's own allocator does for large arrays, and
// wrapped in a numpy array whose base is a capsule; when the array and every
// view of it are gone, the capsule's destructor puts the buffer back into the
// pool (or frees it when the pool is full or off).  A buffer is therefore only
// reused once nothing can reach it.  Reuse takes the smallest free buffer of at
// least the size asked and at most 1/8 larger (a 512^3 output never pins a
// 600-plane buffer); when the pool exceeds its limit the oldest buffers are
// freed first.  The allocations are reported to tracemalloc in numpy's domain,
// so memory tools see them as numpy arrays.  Smaller outputs come from
// numpy (glibc serves them from its heap, whose pages stay mapped anyway).
//
// Limit: MEDSEG_FAST_BUFFER_POOL (bytes, with an optional K/M/G suffix; 0 or off
// disables it) read when _core loads, else min(physical memory / 16, 1 GiB);
// medseg_fast.set_buffer_pool_limit changes it and free_buffer_pool empties it.
// The mutex is held across fork() (pthread_atfork), so a child never inherits it
// locked.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>

#if defined(_WIN32)
#include <malloc.h>
#ifndef NOMINMAX
#define NOMINMAX  // windows.h must not define min and max macros
#endif
#include <windows.h>
#else
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "common.hpp"

namespace {

constexpr size_t kDefaultMinBytes = size_t(4) << 20;  // smaller outputs: numpy's allocator
constexpr size_t kAlign = size_t(2) << 20;       // huge-page aligned, sizes whole huge pages
constexpr unsigned kNumpyTraceDomain = 389047;   // numpy's tracemalloc domain

void* raw_alloc(size_t bytes) {
#if defined(_WIN32)
    void* p = _aligned_malloc(bytes, kAlign);
#else
    void* p = nullptr;
    if (posix_memalign(&p, kAlign, bytes) != 0) p = nullptr;
#endif
    if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, bytes, MADV_HUGEPAGE);  // as numpy does; advice only, errors ignored
#endif
    return p;
}

void raw_free(void* p) {
#if defined(_WIN32)
    _aligned_free(p);
#else
    std::free(p);
#endif
}

size_t physical_memory() {
#if defined(_WIN32)
    MEMORYSTATUSEX st;
    st.dwLength = sizeof st;
    return GlobalMemoryStatusEx(&st) ? size_t(st.ullTotalPhys) : 0;
#elif defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? size_t(pages) * size_t(page) : 0;
#else
    return 0;
#endif
}

size_t default_limit() {
    const size_t gib = size_t(1) << 30, phys = physical_memory();
    return phys ? std::min(gib, phys / 16) : size_t(256) << 20;
}

struct Block {
    void* p;
    size_t cap;    // bytes allocated (a multiple of kAlign)
    size_t bytes;  // bytes of the array it backs
};

class Pool {
public:
    static Pool& get() {
        static Pool* pool = new Pool();  // never destroyed: capsules may outlive module teardown
        return *pool;
    }

    Block* acquire(size_t bytes, bool& hit) {
        hit = false;
        const size_t cap = (bytes + kAlign - 1) / kAlign * kAlign;
        {
            std::lock_guard<std::mutex> lock(mu_);
            auto best = free_.end();
            for (auto it = free_.begin(); it != free_.end(); ++it)
                if (it->cap >= cap && it->cap - cap <= cap / 8 && (best == free_.end() || it->cap < best->cap))
                    best = it;
            if (best != free_.end()) {
                Block* b = new Block{best->p, best->cap, bytes};
                held_ -= best->cap;
                free_.erase(best);
                ++hits_;
                hit = true;
                return b;
            }
            ++misses_;
        }
        auto b = std::make_unique<Block>(Block{nullptr, cap, bytes});
        b->p = raw_alloc(cap);
        return b.release();
    }

    void release(Block* b) {
        void* drop = nullptr;
        std::deque<Block> evicted;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (b->cap > limit_) {
                drop = b->p;
            } else {
                if (poison_) std::memset(b->p, 0xA5, b->bytes);
                try {
                    free_.push_back(*b);  // runs in a capsule destructor: must not throw
                } catch (...) {
                    drop = b->p;
                }
                if (!drop) held_ += b->cap;
                evict_over_limit(evicted);
            }
        }
        delete b;
        if (drop) raw_free(drop);
        for (auto& e : evicted) raw_free(e.p);
    }

    void set_limit(size_t limit) {
        std::deque<Block> evicted;
        {
            std::lock_guard<std::mutex> lock(mu_);
            limit_ = limit;
            evict_over_limit(evicted);
        }
        for (auto& e : evicted) raw_free(e.p);
    }

    size_t free_all() {
        std::deque<Block> all;
        {
            std::lock_guard<std::mutex> lock(mu_);
            all.swap(free_);
            held_ = 0;
        }
        size_t n = 0;
        for (auto& e : all) { n += e.cap; raw_free(e.p); }
        return n;
    }

    py::dict info() {
        // copy under the lock, build the dict after it: allocating Python
        // objects can run the garbage collector, whose capsule destructors
        // call release(), which takes the (non-recursive) lock
        size_t limit, held, buffers, min_bytes;
        uint64_t hits, misses;
        bool poison;
        {
            std::lock_guard<std::mutex> lock(mu_);
            limit = limit_, held = held_, buffers = free_.size(), min_bytes = min_bytes_;
            hits = hits_, misses = misses_, poison = poison_;
        }
        py::dict d;
        d["limit_bytes"] = limit;
        d["held_bytes"] = held;
        d["held_buffers"] = buffers;
        d["min_bytes"] = min_bytes;
        d["hits"] = hits;
        d["misses"] = misses;
        d["poison"] = poison;
        return d;
    }

    void set_min_bytes(size_t n) {
        std::lock_guard<std::mutex> lock(mu_);
        min_bytes_ = std::max<size_t>(n, 1);
    }
    size_t min_bytes() {
        std::lock_guard<std::mutex> lock(mu_);
        return min_bytes_;
    }
    void set_poison(bool on) {
        std::lock_guard<std::mutex> lock(mu_);
        poison_ = on;
    }
    bool enabled() {
        std::lock_guard<std::mutex> lock(mu_);
        return limit_ > 0;
    }

    // fork(): hold the mutex across it so the child never starts with it locked
    void before_fork() { mu_.lock(); }
    void after_fork() { mu_.unlock(); }

private:
    Pool() : limit_(default_limit()) {}
    // With mu_ held: move the oldest free buffers to `out` until the pool is
    // within its limit (the caller frees them after releasing the lock).
    void evict_over_limit(std::deque<Block>& out) {
        while (held_ > limit_ && !free_.empty()) {
            held_ -= free_.front().cap;
            out.push_back(free_.front());
            free_.pop_front();
        }
    }
    std::mutex mu_;
    std::deque<Block> free_;  // free buffers, oldest first
    size_t held_ = 0, limit_, min_bytes_ = kDefaultMinBytes;
    uint64_t hits_ = 0, misses_ = 0;
    bool poison_ = false;  // tests: fill released buffers with 0xA5 bytes
};

// PyTraceMalloc_Track / _Untrack, looked up at run time: Python 3.11's header
// declares them without extern "C" (cpython PR 127772), so a direct call from C++
// names a mangled symbol that does not exist.  Not looked up on Windows (no
// tracking there).
struct TraceMalloc {
    int (*track)(unsigned int, uintptr_t, size_t) = nullptr;
    int (*untrack)(unsigned int, uintptr_t) = nullptr;
    static const TraceMalloc& get() {
        static const TraceMalloc t = [] {
            TraceMalloc r;
#if !defined(_WIN32)
            r.track = reinterpret_cast<int (*)(unsigned int, uintptr_t, size_t)>(
                dlsym(RTLD_DEFAULT, "PyTraceMalloc_Track"));
            r.untrack = reinterpret_cast<int (*)(unsigned int, uintptr_t)>(dlsym(RTLD_DEFAULT, "PyTraceMalloc_Untrack"));
            if (!r.track || !r.untrack) r.track = nullptr, r.untrack = nullptr;
#endif
            return r;
        }();
        return t;
    }
};

void buffer_capsule_destructor(void* ptr) {
    auto* b = static_cast<Block*>(ptr);
    if (auto untrack = TraceMalloc::get().untrack) untrack(kNumpyTraceDomain, reinterpret_cast<uintptr_t>(b->p));
    Pool::get().release(b);
}

// The allocation hook of common.hpp (called with the GIL held).
py::array pooled_array(const py::dtype& dt, const std::vector<py::ssize_t>& dims, bool* mapped) {
    size_t n = size_t(dt.itemsize());
    for (py::ssize_t d : dims) {
        if (d < 0) throw py::value_error("negative dimension");
        if (d && n > std::numeric_limits<size_t>::max() / size_t(d)) throw std::bad_alloc();
        n *= size_t(d);
    }
    Pool& pool = Pool::get();
    if (!pool.enabled() || n < pool.min_bytes()) return py::array(dt, dims);
    bool hit = false;
    Block* b = pool.acquire(n, hit);
    if (mapped) *mapped = hit;
    py::capsule owner;
    try {
        owner = py::capsule(static_cast<void*>(b), &buffer_capsule_destructor);
    } catch (...) {
        pool.release(b);
        throw;
    }
    if (auto track = TraceMalloc::get().track) {
        if (track(kNumpyTraceDomain, reinterpret_cast<uintptr_t>(b->p), n) == -1) PyErr_Clear();  // no memory for the trace
    }
    // strides left empty: C order
    return py::array(dt, dims, std::vector<py::ssize_t>{}, b->p, owner);
}

size_t parse_bytes(std::string s, bool& ok) {
    ok = false;
    s.erase(std::remove_if(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); }), s.end());
    std::string low;
    for (char c : s) low += char(std::tolower(static_cast<unsigned char>(c)));
    if (low == "off" || low == "false" || low == "no" || low == "none") { ok = true; return 0; }
    if (low.empty() || !std::isdigit(static_cast<unsigned char>(low[0]))) return 0;
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(low.c_str(), &end, 10);
    if (errno) return 0;
    std::string unit(end);
    if (!unit.empty() && unit.back() == 'b') unit.pop_back();
    if (!unit.empty() && unit.back() == 'i') unit.pop_back();
    unsigned shift = 0;
    if (unit == "k") shift = 10;
    else if (unit == "m") shift = 20;
    else if (unit == "g") shift = 30;
    else if (!unit.empty()) return 0;
    if (shift && v > (std::numeric_limits<size_t>::max() >> shift)) return 0;
    ok = true;
    return size_t(v) << shift;
}

}  // namespace

MEDSEG_REGISTER(pool) {
    Pool& pool = Pool::get();
#if !defined(_WIN32)
    static bool atfork_done = false;
    if (!atfork_done) {
        atfork_done = true;
        pthread_atfork([] { Pool::get().before_fork(); }, [] { Pool::get().after_fork(); },
                       [] { Pool::get().after_fork(); });
    }
#endif
    if (const char* env = std::getenv("MEDSEG_FAST_BUFFER_POOL")) {
        bool ok = false;
        const size_t v = parse_bytes(env, ok);
        if (ok) {
            pool.set_limit(v);
        } else {
            const std::string msg = std::string("MEDSEG_FAST_BUFFER_POOL=") + env +
                                    " is not a size (bytes, optionally with K, M or G, or 0/off); the default "
                                    "limit is used";
            if (PyErr_WarnEx(PyExc_RuntimeWarning, msg.c_str(), 1) != 0) throw py::error_already_set();
        }
    }
    medseg::bind::array_alloc_hook() = &pooled_array;

    m.def(
        "info", [] { return Pool::get().info(); },
        "The pool's limit, the bytes and buffers it holds, its smallest pooled size, hits and misses.");
    m.def(
        "configure",
        [](std::optional<size_t> limit, std::optional<size_t> min_bytes, std::optional<bool> poison) {
            Pool& p = Pool::get();
            if (min_bytes) p.set_min_bytes(*min_bytes);
            if (poison) p.set_poison(*poison);
            if (limit) p.set_limit(*limit);
        },
        py::arg("limit_bytes") = py::none(), py::arg("min_bytes") = py::none(), py::arg("poison") = py::none(),
        "Set the byte limit (0 disables the pool; buffers beyond it are freed, oldest first), the "
        "smallest output that is pooled, and (tests) poisoning: buffers returning to the pool are "
        "filled with 0xA5 bytes, so a kernel that relies on fresh, zeroed memory fails.");
    m.def(
        "free_all", [] { return Pool::get().free_all(); },
        "Free every buffer the pool holds; returns the bytes freed.");
    m.def(
        "empty",
        [](const std::vector<py::ssize_t>& shape, const py::object& dtype) {
            return pooled_array(py::dtype::from_args(dtype), shape, nullptr);
        },
        py::arg("shape"), py::arg("dtype"), "An uninitialised C-ordered array, from the pool when large.");
}
