#include "server/jinja/text.h"

#include <algorithm>

namespace qrag::jinja {

Text::Text(std::string bytes, Trust trust) : bytes_(std::move(bytes)) {
  if (trust == Trust::kUntrusted && !bytes_.empty()) untrusted_.push_back({0, bytes_.size()});
}

bool Text::AnyUntrustedIn(size_t begin, size_t end) const {
  if (begin >= end) return false;
  // The first span that ends after `begin`.
  auto it = std::upper_bound(untrusted_.begin(), untrusted_.end(), begin,
                             [](size_t pos, const Span& s) { return pos < s.end; });
  return it != untrusted_.end() && it->begin < end;
}

void Text::AddSpanAtEnd(size_t begin, size_t end) {
  if (begin >= end) return;
  if (!untrusted_.empty() && untrusted_.back().end >= begin) {
    untrusted_.back().end = std::max(untrusted_.back().end, end);
  } else {
    untrusted_.push_back({begin, end});
  }
}

void Text::Append(const Text& other) { Append(other, 0, other.size()); }

void Text::Append(const Text& other, size_t begin, size_t end) {
  end = std::min(end, other.size());
  if (begin >= end) return;
  const size_t offset = bytes_.size();
  bytes_.append(other.bytes_, begin, end - begin);
  auto it = std::upper_bound(other.untrusted_.begin(), other.untrusted_.end(), begin,
                             [](size_t pos, const Span& s) { return pos < s.end; });
  for (; it != other.untrusted_.end() && it->begin < end; ++it) {
    const size_t b = std::max(it->begin, begin);
    const size_t e = std::min(it->end, end);
    AddSpanAtEnd(offset + (b - begin), offset + (e - begin));
  }
}

void Text::Append(std::string_view bytes, Trust trust) {
  const size_t offset = bytes_.size();
  bytes_.append(bytes);
  if (trust == Trust::kUntrusted) AddSpanAtEnd(offset, bytes_.size());
}

Text Text::Slice(size_t begin, size_t end) const {
  Text out;
  out.Append(*this, begin, end);
  return out;
}

void Text::MarkUntrusted(size_t begin, size_t end) {
  end = std::min(end, bytes_.size());
  if (begin >= end) return;
  if (untrusted_.empty() || begin >= untrusted_.back().begin) {  // at the end: the common case, O(1)
    if (!untrusted_.empty() && begin <= untrusted_.back().end) {
      untrusted_.back().end = std::max(untrusted_.back().end, end);
    } else {
      untrusted_.push_back({begin, end});
    }
    return;
  }
  std::vector<Span> merged;
  merged.reserve(untrusted_.size() + 1);
  bool placed = false;
  for (const Span& s : untrusted_) {
    if (!placed && begin < s.begin) {
      merged.push_back({begin, end});
      placed = true;
    }
    merged.push_back(s);
  }
  if (!placed) merged.push_back({begin, end});
  untrusted_.clear();
  for (const Span& s : merged) {
    if (!untrusted_.empty() && untrusted_.back().end >= s.begin) {
      untrusted_.back().end = std::max(untrusted_.back().end, s.end);
    } else {
      untrusted_.push_back(s);
    }
  }
}

}  // namespace qrag::jinja
