// medseg/core/types.hpp — the one dtype vocabulary and dispatcher of the C++ core.
//
// A numpy dtype reaches the core as a DType tag (kind + itemsize decided once, in
// the bindings).  Kernels are templates over the pixel type; `dispatch` turns the
// runtime tag into one call of a generic lambda with a value of the matching C++
// type, over a closed type list chosen by the caller.  This replaces the dispatch
// ladders that instantiate every dtype pair by hand (see shared/STYLE.md, habit 2).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace medseg {

enum class DType : int { b1, u8, i8, u16, i16, u32, i32, u64, i64, f32, f64 };

inline const char* dtype_name(DType d) {
    switch (d) {
        case DType::b1: return "bool";
        case DType::u8: return "uint8";
        case DType::i8: return "int8";
        case DType::u16: return "uint16";
        case DType::i16: return "int16";
        case DType::u32: return "uint32";
        case DType::i32: return "int32";
        case DType::u64: return "uint64";
        case DType::i64: return "int64";
        case DType::f32: return "float32";
        case DType::f64: return "float64";
    }
    return "?";
}

template <class T> struct dtype_of;
template <> struct dtype_of<bool> { static constexpr DType value = DType::b1; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<int8_t> { static constexpr DType value = DType::i8; };
template <> struct dtype_of<uint16_t> { static constexpr DType value = DType::u16; };
template <> struct dtype_of<int16_t> { static constexpr DType value = DType::i16; };
template <> struct dtype_of<uint32_t> { static constexpr DType value = DType::u32; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<uint64_t> { static constexpr DType value = DType::u64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };

template <class... Ts> struct type_list {};

// The closed lists used across the core.
using intensity_types = type_list<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, double>;
using float_types = type_list<float, double>;
using label_types = type_list<uint8_t, uint16_t, uint32_t, uint64_t>;  // signed labels are viewed as unsigned

// Intensities compute in float32 unless the user passes float64.
template <class T>
using real_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

namespace detail {
template <class F>
[[noreturn]] decltype(auto) dispatch_impl(DType d, F&&, type_list<>) {
    throw std::invalid_argument(std::string("unsupported dtype ") + dtype_name(d));
}
template <class F, class T, class... Rest>
decltype(auto) dispatch_impl(DType d, F&& f, type_list<T, Rest...>) {
    if (d == dtype_of<T>::value) return f(T{});
    if constexpr (sizeof...(Rest) == 0) {
        throw std::invalid_argument(std::string("unsupported dtype ") + dtype_name(d));
    } else {
        return dispatch_impl(d, std::forward<F>(f), type_list<Rest...>{});
    }
}
}  // namespace detail

// Call f(T{}) for the T of `list` whose tag is d; std::invalid_argument otherwise.
template <class List, class F>
decltype(auto) dispatch(DType d, F&& f) {
    return detail::dispatch_impl(d, std::forward<F>(f), List{});
}

}  // namespace medseg
