"""bncourse: the reference code of an open course on Batch Normalization.

Modules:
    numpy_bn: Batch Normalization and its relatives in NumPy, forward and backward.
    data: the course's datasets (Fashion-MNIST, MNIST, KMNIST), found offline first.
    keras_bn: BatchNorm, a Keras 3 layer from scratch, equivalent to Keras's own.
    models: the tutorials' MLP, CNN and toy model, with BN before, after or nowhere.
    fold: fold_batchnorm, BN merged into neighbouring layers for inference.
    bench: ``python -m bncourse.bench [numpy|fold]``, benchmarks that print ratios.
"""

__version__ = "0.1.0"
