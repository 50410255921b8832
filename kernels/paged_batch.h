// Device view of a backend::AttentionBatch (server/backend/backend.h): the flattened token batch and every
// sequence's block table, uploaded by the CUDA backend before KvWrite / Attention. All arrays are device
// int32. A token at position p of sequence s lives in cache row
//   tables[table_offsets[s] + p / block_size] * block_size + p % block_size.
#ifndef QRAG_KERNELS_PAGED_BATCH_H_
#define QRAG_KERNELS_PAGED_BATCH_H_

#include <cstdint>

namespace qrag::kernels {

struct PagedBatchView {
  const int32_t* positions = nullptr;      // [tokens]
  const int32_t* token_seq = nullptr;      // [tokens]
  const int32_t* table_offsets = nullptr;  // [sequences + 1]
  const int32_t* tables = nullptr;         // concatenated block tables
  int64_t tokens = 0;
  int block_size = 16;
  int sliding_window = 0;  // 0: full causal attention
};

// One layer's paged cache: `num_slots` rows of n_kv_heads*head_dim floats for keys and for values.
struct PagedKvView {
  float* k = nullptr;
  float* v = nullptr;
  int64_t num_slots = 0;
};

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_PAGED_BATCH_H_
