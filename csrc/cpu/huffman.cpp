// CPU implementation of huffman_decode: canonical Huffman code words, most significant bit first,
// in an LSB-first bit stream (bit i of the stream is bit i % 8 of byte i / 8), as gwkcuda/huffman.py
// writes them. Decoding is sequential by nature (a code word's start depends on every word
// before it), so it runs on one thread and is made fast per symbol instead: a 64-bit bit buffer
// refilled 8 bytes at a time, and a table over the next kTableBits bits that resolves every code
// word up to that length in one lookup; longer words fall back to the canonical per-length
// comparison. Each table entry holds every whole code word that fits in its kTableBits bits (up to
// kPerEntry of them), so one lookup emits several symbols of a small, skewed alphabet (Bin & Quant's
// bins average 2-4 bits). CPU only: the stream is decoded once, when a file is loaded.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

namespace gwk {
namespace {

constexpr int kTableBits = 11;  // 2048 entries: covers the common words of small alphabets
constexpr int kMaxLength = 48;  // longest code word accepted (the encoder never exceeds it)
constexpr int kPerEntry = 4;    // symbols one table entry may emit

struct CanonicalCode {
  int max_len = 0;
  std::vector<uint64_t> first_code;     // [len]: canonical code of the first word of that length
  std::vector<int64_t> count;           // [len]: words of that length
  std::vector<int64_t> first_index;     // [len]: index of that first word in `symbols`
  std::vector<int32_t> symbols;         // by (length, symbol)
  std::vector<uint32_t> table;          // [2^kTableBits]: symbol << 8 | length, or 0 (longer word)
  // The same windows decoded as far as whole words go: count and total bits, and the symbols.
  std::vector<uint8_t> multi_count, multi_bits;
  std::vector<int32_t> multi_symbols;   // [2^kTableBits][kPerEntry]
};

CanonicalCode build_code(const at::Tensor& lengths_in) {
  TORCH_CHECK(lengths_in.dim() == 1 && !lengths_in.is_floating_point(),
              "huffman_decode: expected 1-D integer code lengths, got ", lengths_in.scalar_type(), " ",
              lengths_in.sizes());
  TORCH_CHECK(lengths_in.numel() <= (int64_t{1} << 24), "huffman_decode: expected at most 2^24 symbols, got ",
              lengths_in.numel());
  const auto lengths = lengths_in.to(at::kLong).contiguous();
  const int64_t* len = lengths.const_data_ptr<int64_t>();
  const int64_t n = lengths.numel();
  CanonicalCode code;
  code.count.assign(kMaxLength + 1, 0);
  uint64_t kraft = 0;  // sum of 2^(kMaxLength - l): at most 2^kMaxLength for a prefix code
  for (int64_t s = 0; s < n; ++s) {
    TORCH_CHECK(len[s] >= 0 && len[s] <= kMaxLength, "huffman_decode: expected code lengths in 0..",
                kMaxLength, ", got ", len[s], " for symbol ", s);
    if (len[s] == 0) continue;
    code.count[len[s]] += 1;
    code.max_len = std::max<int>(code.max_len, static_cast<int>(len[s]));
    kraft += uint64_t{1} << (kMaxLength - len[s]);
    TORCH_CHECK(kraft <= (uint64_t{1} << kMaxLength),
                "huffman_decode: code lengths violate Kraft's inequality (sum of 2^-length > 1): "
                "not a prefix code");
  }
  code.first_code.assign(kMaxLength + 2, 0);
  code.first_index.assign(kMaxLength + 2, 0);
  uint64_t next = 0;
  int64_t index = 0;
  for (int l = 1; l <= kMaxLength; ++l) {
    next <<= 1;
    code.first_code[l] = next;
    code.first_index[l] = index;
    next += code.count[l];
    index += code.count[l];
  }
  code.symbols.resize(index);
  std::vector<int64_t> fill(code.first_index);
  for (int64_t s = 0; s < n; ++s)
    if (len[s] > 0) code.symbols[fill[len[s]]++] = static_cast<int32_t>(s);
  code.table.assign(size_t{1} << kTableBits, 0);
  for (int l = 1; l <= std::min(code.max_len, kTableBits); ++l) {
    for (int64_t i = 0; i < code.count[l]; ++i) {
      const uint64_t word = code.first_code[l] + i;
      uint32_t reversed = 0;  // the word as it lies in the LSB-first window
      for (int b = 0; b < l; ++b) reversed |= static_cast<uint32_t>((word >> (l - 1 - b)) & 1) << b;
      const uint32_t entry = static_cast<uint32_t>(code.symbols[code.first_index[l] + i]) << 8 | l;
      for (uint32_t high = 0; high < (1u << (kTableBits - l)); ++high) code.table[reversed | high << l] = entry;
    }
  }
  const size_t windows = size_t{1} << kTableBits;
  code.multi_count.assign(windows, 0);
  code.multi_bits.assign(windows, 0);
  code.multi_symbols.assign(windows * kPerEntry, 0);
  for (size_t w = 0; w < windows; ++w) {
    int used = 0, count = 0;
    while (count < kPerEntry) {  // the bits above kTableBits - used are unknown: whole words only
      const uint32_t e = code.table[(w >> used) & ((size_t{1} << kTableBits) - 1)];
      const int l = static_cast<int>(e & 0xFF);
      if (l == 0 || l > kTableBits - used) break;
      code.multi_symbols[w * kPerEntry + count++] = static_cast<int32_t>(e >> 8);
      used += l;
    }
    code.multi_count[w] = static_cast<uint8_t>(count);
    code.multi_bits[w] = static_cast<uint8_t>(used);
  }
  return code;
}

at::Tensor huffman_decode_cpu(const at::Tensor& stream_in, const at::Tensor& lengths, int64_t numel) {
  TORCH_CHECK(stream_in.scalar_type() == at::kByte, "huffman_decode: expected a uint8 stream, got ",
              stream_in.scalar_type());
  TORCH_CHECK(numel >= 0, "huffman_decode: expected numel >= 0, got ", numel);
  const CanonicalCode code = build_code(lengths);
  TORCH_CHECK(numel == 0 || code.max_len > 0, "huffman_decode: ", numel, " symbols, but no symbol has a code");
  const auto stream = stream_in.contiguous();
  const uint8_t* data = stream.const_data_ptr<uint8_t>();
  const int64_t size = stream.numel();
  // A symbol takes at least one bit: more symbols than stream bits is a corrupted header, refused
  // before the output is allocated.
  TORCH_CHECK(numel <= size * 8, "huffman_decode: ", numel, " symbols cannot fit in a stream of ", size,
              " bytes");
  // kPerEntry - 1 slots of slack: a table entry's symbols are copied whole, even past the end.
  auto storage = at::empty({numel + kPerEntry}, stream.options().dtype(at::kInt));  // int32, as unpack_bits
  int32_t* dst = storage.mutable_data_ptr<int32_t>();
  uint64_t buf = 0;  // the next `have` stream bits, the earliest in bit 0
  int have = 0;
  int64_t byte = 0;
  const uint64_t mask = (uint64_t{1} << kTableBits) - 1;
  for (int64_t i = 0; i < numel;) {
    if (have < kMaxLength) {
      if (byte + 8 <= size) {  // refill whole bytes from one unaligned 8-byte load
        uint64_t word;
        std::memcpy(&word, data + byte, 8);
        buf |= word << have;
        byte += (63 - have) >> 3;
        have |= 56;
      } else {
        while (have <= 56 && byte < size) {
          buf |= static_cast<uint64_t>(data[byte++]) << have;
          have += 8;
        }
      }
    }
    const size_t window = buf & mask;
    const int bits = code.multi_bits[window];
    if (code.multi_count[window] > 0 && bits <= have) {  // several symbols in one lookup
      const int32_t* symbols = &code.multi_symbols[window * kPerEntry];
      for (int j = 0; j < kPerEntry; ++j) dst[i + j] = symbols[j];
      i += code.multi_count[window];
      buf >>= bits;
      have -= bits;
      continue;
    }
    const uint32_t entry = code.table[window];
    int l = static_cast<int>(entry & 0xFF);
    int64_t symbol;
    if (l != 0) {
      symbol = entry >> 8;
    } else {  // a word longer than the table: canonical decoding, one bit at a time
      uint64_t word = 0;
      symbol = -1;
      for (l = 1; l <= code.max_len && l <= have; ++l) {
        word = word << 1 | ((buf >> (l - 1)) & 1);
        if (code.count[l] > 0 && word >= code.first_code[l] &&
            word - code.first_code[l] < static_cast<uint64_t>(code.count[l])) {
          symbol = code.symbols[code.first_index[l] + static_cast<int64_t>(word - code.first_code[l])];
          break;
        }
      }
      TORCH_CHECK(symbol >= 0 || l <= code.max_len, "huffman_decode: corrupted stream (no code word matches "
                  "after symbol ", i, ")");
    }
    TORCH_CHECK(symbol >= 0 && l <= have, "huffman_decode: the stream ended after ", i, " of ", numel, " symbols");
    dst[i++] = static_cast<int32_t>(symbol);
    buf >>= l;
    have -= l;
  }
  auto out = storage.narrow(0, 0, numel);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CPU, m) { m.impl("huffman_decode", &huffman_decode_cpu); }

}  // namespace gwk
