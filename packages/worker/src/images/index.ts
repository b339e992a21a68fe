/**
 * Images on the worker: pull from OCI registries, apply layers into a rootfs, pack it as squashfs,
 * and serve mounted images from an LRU cache; plus the default base image for `new Image()`.
 */
export { RegistryClient, RegistryError, type RegistryAuth, type RegistryCredentialValues, type PulledImage, type PulledLayer, type PushImage, type PushResult, type ResolvedImage } from "./registry.js";
export { applyLayer, applyLayers, LayerRefusedError, type ApplyStats, type LayerSource } from "./layers.js";
export { packRootfs, mountPacked, unmountPacked, packedPath, type PackResult } from "./pack.js";
export { ImageCache, type ImageCacheOptions, type ImageLease } from "./cache.js";
export { ensureBaseImage, BASE_IMAGE_VERSION, type BaseImage, type BaseImageOptions } from "./base.js";
export { DigestMismatchError, sha256File } from "./digest.js";
export { MediaType, ManifestError, type ImageConfig, type ImageManifest, type Platform } from "./oci.js";
