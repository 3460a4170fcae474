/* ProcessPrng for Wine 8.0, which lacks bcryptprimitives.dll: Rust's standard library
 * (1.78+) imports it for random numbers. Used only by tests/windows/run-wine.sh. */
#include <windows.h>
#include <ntsecapi.h>
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) return FALSE;
        data += chunk; len -= chunk;
    }
    return TRUE;
}
