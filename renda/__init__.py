"""renda-sections: label the paragraphs of people's congress standing committee work reports."""

__version__ = "0.1.0"
