def test_tiny_checkpoint_loads(tiny_loaded):
    assert tiny_loaded.model.config.n_layers == 2
    assert tiny_loaded.tokenizer.vocab_size == tiny_loaded.model.config.vocab_size
