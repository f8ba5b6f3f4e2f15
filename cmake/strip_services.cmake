# Copies the .proto IN to OUT in the form protoc-c 1.4 accepts (see
# CMakeLists.txt): without its `service` blocks, and with proto3 `optional`
# dropped. protoc-c cannot generate presence for proto3 optional; the wire
# encoding is the same, so C code reads the value and gives up only the
# "was it set" bit (code that needs it decodes those fields itself).
file(READ "${IN}" text)
string(REGEX REPLACE "service[ \t]+[A-Za-z0-9_]+[ \t\r\n]*{[^}]*}" "" text "${text}")
string(REGEX REPLACE "([\n;{][ \t]*)optional[ \t]+" "\\1" text "${text}")
file(WRITE "${OUT}" "${text}")
