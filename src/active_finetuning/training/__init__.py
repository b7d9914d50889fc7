"""What the labels are for: finetuning a pretrained model (``finetune``), the model artifact
(``model``), scoring it on a test set (``evaluate``), and the fast linear/kNN probe (``probe``)."""
