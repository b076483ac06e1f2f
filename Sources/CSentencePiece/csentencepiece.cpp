#include "csentencepiece.h"
