// Owns: which forms image.base and image.mirror may take, judged as their readers will read them
// (tasks/base-image.ts tells a URL from a path by a literal `http://` or `https://`; the
// downloader and the shorthands parse with WHATWG URL, which drops tabs and newlines, skips extra
// slashes and reads `\` as `/`). A value is refused when the two readings could differ.
// Not: whether the image exists or verifies (src/image/, tasks/base-image.ts).
import { fileURLToPath } from 'node:url';

export interface SourceProblem {
  message: string;
  hint: string;
}

// `name:` at the start: what a URL parser takes for a scheme.
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
// Exactly as the base-image rule tests for a URL, and a host right after the slashes.
const HTTP_START = /^https?:\/\/[^/\\]/;

/** How image.base is read: a URL by a literal `http://` or `https://`; a path when it has a `/`,
 * starts with `.` or ends like an image file; anything else names a shorthand. */
export function baseKind(base: string): 'url' | 'path' | 'shorthand' {
  if (/^https?:\/\//.test(base)) return 'url';
  return base.includes('/') || base.startsWith('.') || /\.(qcow2|img|raw)$/.test(base) ? 'path' : 'shorthand';
}

/** What is wrong with image.base; undefined for a shorthand, a usable http(s) URL, or a path. */
export function baseProblem(base: string): SourceProblem | undefined {
  const scheme = SCHEME.exec(base)?.[1]?.toLowerCase();
  if (scheme === undefined) return undefined; // a shorthand or a path
  if (scheme === 'http' || scheme === 'https') return httpProblem(base, 'image.base', 'e.g. https://cloud.example/images/debian.qcow2');
  if (scheme === 'file') {
    const path = filePath(base);
    return {
      message: 'image.base: file: URLs are not supported; a local image is given by its path',
      hint: path ? `write the path itself: image.base: ${path}` : 'write the path itself, e.g. image.base: /var/lib/images/debian.qcow2',
    };
  }
  return {
    message: `image.base: ${scheme}: URLs are not supported; rum downloads over http and https only`,
    hint: 'give an http(s) URL, a shorthand such as debian-12, or a path (a relative path that starts like "name:" needs ./ in front)',
  };
}

/** What is wrong with image.mirror, a base URL the shorthands' paths are appended to. */
export function mirrorProblem(mirror: string): SourceProblem | undefined {
  const example = 'e.g. https://mirror.example/debian-cloud/';
  if (!/^https?:/i.test(mirror)) return { message: 'image.mirror must be an http(s) URL', hint: example };
  const problem = httpProblem(mirror, 'image.mirror', example);
  if (problem) return problem;
  // Refused here as the shorthands refuse them at download time, but at the line. An empty `?`
  // is a query too: URL.search is '' for it, and every path appended would follow it.
  if (authority(mirror).includes('@'))
    return {
      message: 'image.mirror may not carry a user name or password',
      hint: 'remove the user:password@ part: rum sends no credentials to a mirror, and a shared rum.yaml is no place for them',
    };
  if (/[?#]/.test(mirror))
    return {
      message: 'image.mirror may not have a query (?) or a fragment (#)',
      hint: "it is a base URL: rum appends each image's path to it, which would then be part of the query or fragment",
    };
  return undefined;
}

/** An http(s) URL that every reader sees alike. The value is never quoted back: it may hold a password. */
function httpProblem(url: string, what: string, example: string): SourceProblem | undefined {
  if (!/^https?:\/\//.test(url))
    return { message: `${what}: write the scheme as http:// or https://, in lowercase and with two slashes`, hint: example };
  if (!HTTP_START.test(url)) return { message: `${what}: an http(s) URL needs a host right after the //`, hint: example };
  if (/\s/.test(url)) return { message: `${what} may not contain a space`, hint: 'percent-encode it: a space is %20' };
  if (url.includes('\\')) return { message: `${what} may not contain a backslash: URL parsers read it as /`, hint: 'write / (or %5C for a backslash in the path)' };
  if (!URL.canParse(url)) return { message: `${what} is not a valid URL: check its host name and port`, hint: example };
  return undefined;
}

/** `user:pass@host:port` of `scheme://user:pass@host:port/path?query#fragment`. */
function authority(url: string): string {
  const rest = url.slice(url.indexOf('//') + 2);
  const end = rest.search(/[/?#]/);
  return end < 0 ? rest : rest.slice(0, end);
}

function filePath(url: string): string | undefined {
  try {
    return fileURLToPath(url);
  } catch {
    return undefined;
  }
}
