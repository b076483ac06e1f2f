// Plain C interface over libsentencepiece; filled in by the tokenizer work.
#pragma once
