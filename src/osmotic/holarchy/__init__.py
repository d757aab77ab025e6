"""The holarchy layer that holonic learning and D-SSL share: the tree of holons with its
neighbour graphs (`holarchy`), the paper's structures and other builders (`builders`), the
synchronous HoAL schedule and participation draws (`schedule`), the batched terminal trainer
(`trainer`), where terminals train (`terminals`: in this process or over Ray actors) and its
picture (`draw`)."""
