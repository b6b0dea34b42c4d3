// `rum images`: every cached base image and provisioned layer, and every local image a VM sits
// on, with its size, where it came from and which VMs use it. Changes nothing; loads no rum.yaml.
import { listImages } from '../../image/gc.js';
import { Output } from '../output.js';

export async function images(opts: { json?: boolean }): Promise<number> {
  new Output(opts).images(await listImages());
  return 0;
}
