"""Reproducible companion to "Key Point Sensitive Loss for Long-Tailed Visual
Recognition" (M. Li, Y.-M. Cheung, Z. Hu, IEEE TPAMI 45(4), 2023,
doi:10.1109/TPAMI.2022.3196044).

Flow (one direction): configs -> data -> models -> losses (params, schedules)
-> train -> results -> notebooks -> book.
"""

__version__ = "0.1.0"
