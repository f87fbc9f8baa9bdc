// Marks what libshbuf.so keeps to itself although a public header declares
// it (private members): never exported, so it may change without breaking
// programs linked against libshbuf.so.0.
#pragma once

#define SHBUF_LOCAL __attribute__((visibility("hidden")))
