"""A byte-level T5-style encoder-decoder for WMT14 German to English (needs the prepared TFDS
`wmt14_translate/de-en`; no downloads).

Sentences are cut at 128 bytes each side; evaluation reports per-token loss and accuracy and
exact match with beam search (4 beams, length penalty 0.6). BLEU is not computed by jaxdl.
Not reproduced here: this machine has no WMT14.

python -m jaxdl.train --config experiments/wmt14_t5.py --workdir runs/wmt14_t5 \
    --config.data.data_dir=DIR
"""

from jaxdl.config import base_config, check_variant, make_quick


def get_config(variant: str = ""):
    check_variant(variant)
    config = base_config()
    config.data.name = "wmt14_translate/de-en"
    config.data.batch_size = 128
    config.data.eval_batch_size = 128

    config.task.name = "seq2seq"
    config.task.beam_size = 4
    config.task.length_penalty = 0.6
    config.task.max_source_length = 128
    config.task.max_target_length = 129  # 128 bytes and EOS.

    config.model.name = "seq2seq"
    config.model.hidden_size = 512
    config.model.encoder_layers = 6
    config.model.decoder_layers = 6
    config.model.num_heads = 8
    config.model.mlp_dim = 2048
    config.model.positions = "rotary"
    config.model.max_length = 160
    config.model.dropout_rate = 0.1
    config.model.dtype = "bfloat16"

    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 5e-4
    config.optimizer.b2 = 0.98
    config.optimizer.weight_decay = 0.01
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.name = "warmup_cosine"
    config.schedule.warmup_steps = 4000

    config.train.num_steps = 200_000
    config.train.eval_every = 5000
    config.train.checkpoint_every = 5000
    config.train.monitor = "loss"
    config.train.monitor_mode = "min"

    if variant == "quick":
        config.task.beam_size = 2
        config.task.max_source_length = 16
        config.task.max_target_length = 17
        config.model.hidden_size = 32
        config.model.encoder_layers = 1
        config.model.decoder_layers = 1
        config.model.num_heads = 2
        config.model.mlp_dim = 64
        config.model.max_length = 32
        config.model.dtype = "float32"
        make_quick(config)
    return config
