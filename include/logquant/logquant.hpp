// Umbrella header: everything a user of logquant needs. Standard library only.
#pragma once

#include "attention_state.hpp"
#include "config.hpp"
#include "error.hpp"
#include "fp16.hpp"
#include "kernels/dispatch.hpp"
#include "kv_cache.hpp"
#include "quant/group_quantizer.hpp"
#include "quant/tile_layout.hpp"
#include "rotation.hpp"
#include "selector/full_selector.hpp"
#include "selector/log_selector.hpp"
#include "selector/recent_selector.hpp"
#include "selector/selector.hpp"
#include "selector/sink_selector.hpp"
#include "version.hpp"
