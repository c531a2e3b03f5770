#!/usr/bin/env bash
# Builds PostgreSQL's encoding conversion procedures (src/backend/utils/mb/conversion_procs)
# as WASIX side modules the bundled PGlite build can dlopen, into this folder.
#
# Usage: native/encodings/build.sh <postgresql-17-source-checkout>
# Needs (Debian): clang lld wasi-libc bison flex perl make. Run by hand when the runtime's
# PostgreSQL moves to another major version; the built modules are committed.
set -euo pipefail
src=$(cd "${1:?usage: $0 <postgresql-17-source-checkout>}" && pwd)
out=$(cd "$(dirname "$0")" && pwd)
grep -q 'AC_INIT(\[PostgreSQL\], \[17\.' "$src/configure.ac" || { echo "$src is not a PostgreSQL 17 source tree" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# pg_config.h from a native configure, then made to describe wasm32 (the runtime is
# "PostgreSQL 17.5 on wasm32-unknown-wasix, 32-bit"): 4-byte long, size_t and pointers,
# 8-byte int64 as long long, no x86 intrinsics. Only the headers are used.
"$src/configure" --without-icu --without-readline --without-zlib >configure.log 2>&1 ||
  { tail -20 configure.log >&2; exit 1; }
make -C src/backend generated-headers >make.log 2>&1 || { tail -20 make.log >&2; exit 1; }
sed -i -E \
  -e 's/^#define ALIGNOF_LONG 8/#define ALIGNOF_LONG 4/' \
  -e 's/^#define HAVE_LONG_INT_64 1/#define HAVE_LONG_LONG_INT_64 1/' \
  -e 's/^#define INT64_MODIFIER "l"/#define INT64_MODIFIER "ll"/' \
  -e 's/^#define PG_INT64_TYPE long int/#define PG_INT64_TYPE long long int/' \
  -e 's/^#define SIZEOF_(LONG|SIZE_T|VOID_P) 8/#define SIZEOF_\1 4/' \
  -e 's/^#define PG_PRINTF_ATTRIBUTE gnu_printf/#define PG_PRINTF_ATTRIBUTE printf/' \
  -e 's/^#define (HAVE_X86_64_POPCNTQ|HAVE_XSAVE_INTRINSICS|HAVE__GET_CPUID|HAVE__GET_CPUID_COUNT|HAVE__CPUIDEX|USE_AVX512_POPCNT_WITH_RUNTIME_CHECK|USE_SSE42_CRC32C_WITH_RUNTIME_CHECK|PG_INT128_TYPE|ALIGNOF_PG_INT128_TYPE) .*/\/* \1: not on wasm32 *\//' \
  src/include/pg_config.h
for want in 'SIZEOF_VOID_P 4' 'SIZEOF_SIZE_T 4' 'PG_INT64_TYPE long long int'; do
  grep -q "^#define $want\$" src/include/pg_config.h || { echo "pg_config.h: could not set $want" >&2; exit 1; }
done

# WASI's libc lacks these; the procedures use nothing from them.
mkdir stub
touch stub/pwd.h stub/netdb.h
cat >stub/setjmp.h <<'H'
/* Declarations only: the conversion procedures never set a jump buffer. */
typedef unsigned long long jmp_buf[8];
typedef jmp_buf sigjmp_buf;
int sigsetjmp(sigjmp_buf env, int savemask);
_Noreturn void siglongjmp(sigjmp_buf env, int val);
H

resource=$(clang -print-resource-dir)
# clang 14 makes position-independent code for wasm only for the emscripten target;
# __wasi__ selects WASI's headers. Shared memory and atomics as the runtime's modules.
cflags=(--target=wasm32-unknown-emscripten -D__wasi__ -nostdinc -isystem "$resource/include"
  -isystem /usr/include/wasm32-wasi -I stub -I src/include -I "$src/src/include"
  -O2 -fPIC -matomics -mbulk-memory -mmutable-globals -Wno-ignored-attributes)
rm -f "$out"/*.so
for dir in "$src"/src/backend/utils/mb/conversion_procs/*/; do
  name=$(basename "$dir")
  objs=()
  for c in "$dir"*.c; do
    clang "${cflags[@]}" -c "$c" -o "$name-$(basename "$c" .c).o"
    objs+=("$name-$(basename "$c" .c).o")
  done
  wasm-ld -shared --experimental-pic --shared-memory --import-memory --max-memory=4294967296 \
    --export-dynamic --strip-debug -o "$out/$name.so" "${objs[@]}"
  echo "built $name.so ($(stat -c %s "$out/$name.so") bytes)"
done
