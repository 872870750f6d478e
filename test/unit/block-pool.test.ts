import { BLOCK_BYTES, lendViews, releaseView, takeBlock } from '../../src/dicom/block-pool';

describe('block pool', () => {
  it('reads into a block again once every view lent from it was released', () => {
    const block = takeBlock(1000);
    const views = [block.subarray(0, 400), block.subarray(400, 1000)];
    lendViews(views);
    releaseView(views[0]);
    // one view still out: the next block is another one
    const other = takeBlock(10);
    expect(other.buffer).not.toBe(block.buffer);
    releaseView(views[1]);
    expect(takeBlock(BLOCK_BYTES).buffer).toBe(block.buffer);
  });

  it('ignores views released twice, buffers never lent, and reads larger than a block', () => {
    const block = takeBlock(100);
    const views = [block.subarray(0, 50), block.subarray(50, 100)];
    lendViews(views);
    releaseView(views[0]);
    releaseView(views[0]);
    releaseView(block);
    releaseView(Buffer.alloc(10));
    expect(takeBlock(100).buffer).not.toBe(block.buffer);
    const big = takeBlock(BLOCK_BYTES + 1);
    expect(big.length).toBe(BLOCK_BYTES + 1);
    lendViews([big]);
    releaseView(big);
    expect(takeBlock(BLOCK_BYTES).buffer).not.toBe(big.buffer);
  });
});
