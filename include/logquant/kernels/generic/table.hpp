// An ISA's kernel table, filled from the kernel templates of the namespace that includes this
// (one instance per bit width). No include guard.

inline const kernels::KernelTable& table() {
  static const kernels::KernelTable t{
      kIsa,
      {&quantize_key_group<2>, &quantize_key_group<4>, &quantize_key_group<8>},
      {&quantize_value_token<2>, &quantize_value_token<4>, &quantize_value_token<8>},
      {{&attend_quantized<2, 2>, &attend_quantized<2, 4>, &attend_quantized<2, 8>},
       {&attend_quantized<4, 2>, &attend_quantized<4, 4>, &attend_quantized<4, 8>},
       {&attend_quantized<8, 2>, &attend_quantized<8, 4>, &attend_quantized<8, 8>}},
      &attend_full,
      {&dequantize_keys<2>, &dequantize_keys<4>, &dequantize_keys<8>},
      {&dequantize_values<2>, &dequantize_values<4>, &dequantize_values<8>}};
  return t;
}
