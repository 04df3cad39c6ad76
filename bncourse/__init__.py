"""bncourse: the reference code of an open course on Batch Normalization.

Modules:
    numpy_bn: Batch Normalization and its relatives in NumPy, forward and backward.
    data: the course's datasets (Fashion-MNIST, MNIST, KMNIST), found offline first.
    bench: ``python -m bncourse.bench``, the speed of the NumPy reference.
"""

__version__ = "0.1.0"
