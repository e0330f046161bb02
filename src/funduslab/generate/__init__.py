"""Generated augmentation: a class-conditional VAE, its fitting, sampling and mixing into train.

Modules: :mod:`~funduslab.generate.vae` (network and loss terms),
:mod:`~funduslab.generate.train_vae` (fit, checkpoint), :mod:`~funduslab.generate.sample` (per-class sampling, the generated folder),
:mod:`~funduslab.data.mixing` (``data.extra_train``), :mod:`~funduslab.generate.sheet`
(real-vs-generated contact sheet), :mod:`~funduslab.generate.workflow` (``funduslab generate``).
"""
