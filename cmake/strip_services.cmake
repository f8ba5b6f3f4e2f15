# Copies the .proto IN to OUT without its `service` blocks (see CMakeLists.txt).
file(READ "${IN}" text)
string(REGEX REPLACE "service[ \t]+[A-Za-z0-9_]+[ \t\r\n]*{[^}]*}" "" text "${text}")
file(WRITE "${OUT}" "${text}")
