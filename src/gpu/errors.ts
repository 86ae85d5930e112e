/**
 * Errors of GPU control. Each says whether retrying the same call can help.
 */

/** Base class: every GPU error carries `retryable`. */
export class GpuError extends Error {
  override name = 'GpuError';
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.retryable = retryable;
  }
}

/** The caller lacks the privilege to change clocks (NVML_ERROR_NO_PERMISSION, nvidia-smi "insufficient permissions"). */
export class GpuPermissionError extends GpuError {
  override name = 'GpuPermissionError';
  constructor(what: string, options?: { cause?: unknown }) {
    super(
      `${what}: no permission to change GPU clocks; run the instance manager as root or with CAP_SYS_ADMIN ` +
        `(or use --gpu-backend emulated)`,
      false,
      options,
    );
  }
}

/** The GPU or driver does not support this operation (NVML_ERROR_NOT_SUPPORTED, nvidia-smi "[N/A]"). */
export class GpuNotSupportedError extends GpuError {
  override name = 'GpuNotSupportedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, false, options);
  }
}

/** The backend could not be loaded or initialised (library missing, nvmlInit failed, nvidia-smi missing). */
export class GpuLibraryError extends GpuError {
  override name = 'GpuLibraryError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, false, options);
  }
}

/** A bad request to the control itself (not finite, min > max, unknown GPU index). */
export class GpuRequestError extends GpuError {
  override name = 'GpuRequestError';
  constructor(message: string) {
    super(message, false);
  }
}

/** Clock changes were asked of a control opened read-only (a shared GPU). */
export class GpuReadOnlyError extends GpuError {
  override name = 'GpuReadOnlyError';
  constructor(what: string) {
    super(`${what}: this GPU control is read-only (the GPU may be shared); clocks are never changed`, false);
  }
}

/** A backend call did not answer in time or the transport failed (emulator HTTP, nvidia-smi hang). */
export class GpuTransportError extends GpuError {
  override name = 'GpuTransportError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, true, options);
  }
}

/** NVML return codes this code distinguishes (nvml.h, nvmlReturn_t). */
export const NVML_RETURN = {
  SUCCESS: 0,
  UNINITIALIZED: 1,
  INVALID_ARGUMENT: 2,
  NOT_SUPPORTED: 3,
  NO_PERMISSION: 4,
  ALREADY_INITIALIZED: 5,
  NOT_FOUND: 6,
  INSUFFICIENT_SIZE: 7,
  INSUFFICIENT_POWER: 8,
  DRIVER_NOT_LOADED: 9,
  TIMEOUT: 10,
  IRQ_ISSUE: 11,
  LIBRARY_NOT_FOUND: 12,
  FUNCTION_NOT_FOUND: 13,
  CORRUPTED_INFOROM: 14,
  GPU_IS_LOST: 15,
  UNKNOWN: 999,
} as const;

/** Any other NVML failure, with its return code and the library's own nvmlErrorString text. */
export class NvmlError extends GpuError {
  override name = 'NvmlError';
  readonly code: number;
  readonly nvmlMessage: string;
  readonly fn: string;
  constructor(fn: string, code: number, nvmlMessage: string) {
    // a timeout or an IRQ hiccup may pass; anything else (bad argument, lost GPU) will not on retry.
    super(`${fn} failed: ${nvmlMessage} (nvmlReturn_t ${code})`, code === NVML_RETURN.TIMEOUT || code === NVML_RETURN.IRQ_ISSUE);
    this.code = code;
    this.nvmlMessage = nvmlMessage;
    this.fn = fn;
  }
}
