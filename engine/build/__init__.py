"""Build-time code (torch, transformers): training, BERT-to-SqueezeBERT conversion, ONNX export. Never imported
by the app at run time."""
